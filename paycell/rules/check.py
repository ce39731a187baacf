"""Type checking of a parsed rule set, and `compile_rules`, the one way in.

Types: money (an amount in one currency), count, score (the model's, 0..1), duration, text.
Every comparison needs a field or an aggregate on one side; both sides have the same type. A
money comparison between two known currencies must name the same one; `sum(...)` takes its
currency from the other side (a literal, or the payment's own currency when compared with
`amount`). Everything found is reported together and the whole rule set is rejected.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable
from decimal import Decimal
from importlib import resources

from paycell.errors import RuleProblem, RuleSetInvalid
from paycell.money import CURRENCY_EXPONENT
from paycell.rules import ast
from paycell.rules.parse import parse_rules

# field -> its type; the evaluator reads each from PaymentFacts (evaluate.FIELD_READERS).
FIELD_TYPES: dict[str, str] = {
    "amount": "money",
    "currency": "text",
    "direction": "text",
    "option": "text",
    "connector": "text",
    "user": "text",
    "instrument": "text",
    "instrument.country": "text",
    "instrument.age": "duration",
    "ip": "text",
    "ip.country": "text",
    "model.score": "score",
}
DIRECTIONS = frozenset({"payin", "payout", "transfer"})
WINDOW_S_MAX = 90 * 86_400  # the velocity queries' bound: no window reaches further back
ORDERED_TYPES = frozenset({"money", "count", "score", "duration"})


def compile_rules(text: str, known_lists: Iterable[str] | None = None) -> ast.RuleSet:
    """Parse and check a rule set. Raises RuleSyntaxError (does not parse) or RuleSetInvalid
    carrying every problem found. `known_lists`, when given, are the only list names allowed."""
    rule_set = parse_rules(text)
    problems = check_rules(rule_set, None if known_lists is None else frozenset(known_lists))
    if problems:
        raise RuleSetInvalid(problems)
    return rule_set


def check_rules(rule_set: ast.RuleSet, known_lists: frozenset[str] | None) -> list[RuleProblem]:
    """Every type problem of `rule_set`, in file order; [] when it is sound."""
    checker = _Checker(known_lists)
    for rule in rule_set.rules:
        checker.condition(rule.condition)
    return sorted(checker.problems, key=lambda p: (p.line, p.column))


def _describe(node: ast.Operand) -> str:
    match node:
        case ast.Field(name=name):
            return name
        case ast.Aggregate(function=function):
            return f"{function}(...)"
        case ast.MoneyLit(currency=currency):
            return f"an amount in {currency}"
        case ast.NumberLit(value=value):
            return f"the number {value}"
        case ast.DurationLit():
            return "a duration"
        case ast.TextLit(value=value):
            return f'the text "{value}"'
    raise AssertionError(node)


class _Checker:
    def __init__(self, known_lists: frozenset[str] | None):
        self.known_lists = known_lists
        self.problems: list[RuleProblem] = []

    def problem(self, node: ast.Node, message: str) -> None:
        self.problems.append(RuleProblem(node.line, node.column, message))

    def condition(self, node: ast.Condition) -> None:
        match node:
            case ast.And(operands=operands) | ast.Or(operands=operands):
                for operand in operands:
                    self.condition(operand)
            case ast.Not(operand=operand):
                self.condition(operand)
            case ast.Comparison():
                self.comparison(node)
            case ast.Membership():
                self.membership(node)

    def type_of(self, node: ast.Operand) -> str | None:
        """The operand's type, or None (a problem recorded) for an unknown field or bad window."""
        match node:
            case ast.Field(name=name):
                if name not in FIELD_TYPES:
                    close = difflib.get_close_matches(name, FIELD_TYPES, n=1) or \
                        [f for f in FIELD_TYPES if f.endswith("." + name)]
                    hint = f" (did you mean {close[0]}?)" if close else ""
                    self.problem(node, f"unknown field {name}{hint}: expected one of {', '.join(FIELD_TYPES)}")
                return FIELD_TYPES.get(name)
            case ast.Aggregate(function=function, window_s=window_s):
                if not 0 < window_s <= WINDOW_S_MAX:
                    self.problem(node, f"the window of {function}(...) must be more than 0 and at most 90 days")
                return "count" if function == "count" else "money"
            case ast.MoneyLit():
                return "money"
            case ast.NumberLit():
                return "number"
            case ast.DurationLit():
                return "duration"
            case ast.TextLit():
                return "text"
        raise AssertionError(node)

    def comparison(self, node: ast.Comparison) -> None:
        left, right = node.left, node.right
        left_type, right_type = self.type_of(left), self.type_of(right)
        if left_type is None or right_type is None:
            return
        if not _is_variable(left) and not _is_variable(right):
            self.problem(node, "a comparison needs a field or an aggregate on one side, not two constants")
        if _is_sum(left) and _is_sum(right):
            self.problem(node, "sum(...) takes its currency from the other side: compare it with an amount")
            return
        pair = {left_type, right_type}
        if pair == {"count", "number"}:
            self.whole_count(right if left_type == "count" else left)
        elif pair == {"score", "number"}:
            self.score(right if left_type == "score" else left)
        elif left_type != right_type:
            self.problem(node, f"cannot compare {_describe(left)} ({left_type}) with "
                               f"{_describe(right)} ({right_type})")
            return
        if left_type == "money" and right_type == "money":
            self.currencies(node)
        if left_type == "text" and node.op not in ("=", "!="):
            self.problem(node, f"text compares only with = or !=, not {node.op}")
        for side, other in ((left, right), (right, left)):
            if isinstance(side, ast.Field) and isinstance(other, ast.TextLit):
                self.text_value(side.name, other)

    def currencies(self, node: ast.Comparison) -> None:
        left, right = node.left, node.right
        if isinstance(left, ast.MoneyLit) and isinstance(right, ast.MoneyLit) and left.currency != right.currency:
            self.problem(node, f"currency mismatch: {left.currency} compared with {right.currency}")

    def whole_count(self, node: ast.Operand) -> None:
        if isinstance(node, ast.NumberLit) and node.value != node.value.to_integral_value():
            self.problem(node, f"a count is a whole number, not {node.value}")

    def score(self, node: ast.Operand) -> None:
        if isinstance(node, ast.NumberLit) and not Decimal(0) <= node.value <= Decimal(1):
            self.problem(node, f"model.score is between 0 and 1, not {node.value}")

    def text_value(self, field: str, value: ast.TextLit) -> None:
        if field == "direction" and value.value not in DIRECTIONS:
            self.problem(value, f'unknown direction "{value.value}": expected payin, payout or transfer')
        if field == "currency" and value.value not in CURRENCY_EXPONENT:
            self.problem(value, f'unknown currency "{value.value}": expected an ISO 4217 code like "USD"')

    def membership(self, node: ast.Membership) -> None:
        operand_type = self.type_of(node.operand)
        if operand_type is None:
            return
        if not isinstance(node.operand, ast.Field) or operand_type != "text":
            self.problem(node, f"in applies to a text field (country, ip, user, ...), not {_describe(node.operand)}")
            return
        if node.list_name is not None:
            if self.known_lists is not None and node.list_name not in self.known_lists:
                known = ", ".join(sorted(self.known_lists)) or "none"
                self.problem(node, f"unknown list list:{node.list_name} (known lists: {known})")
            return
        for value in node.values:
            if not isinstance(value, ast.TextLit):
                self.problem(value, f"a list for {node.operand.name} holds quoted texts, not {_describe(value)}")
            else:
                self.text_value(node.operand.name, value)


def _is_variable(node: ast.Operand) -> bool:
    return isinstance(node, (ast.Field, ast.Aggregate))


def _is_sum(node: ast.Operand) -> bool:
    return isinstance(node, ast.Aggregate) and node.function == "sum"


BLOCK_LISTS = ("blocked_users", "blocked_instruments", "blocked_ips", "blocked_countries")


def default_rules_text() -> str:
    """The text of the default rule file shipped in paycell/rules (it names the BLOCK_LISTS)."""
    return resources.files("paycell.rules").joinpath("default.rules").read_text()
