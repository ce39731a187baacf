"""Text to syntax tree: lark's LALR parser over grammar.lark, then a Transformer to ast nodes.

LALR rather than Earley: it knows at every point the exact set of tokens that may come next,
which is what a rule author needs to read in an error ("expected a comparison or in, found '('").
Money literals become minor units here, through paycell.money; a bad one is a problem of the
rule set like any other (collected, not raised one by one).
"""
from __future__ import annotations

import functools
from decimal import Decimal
from importlib import resources

import lark
from lark import Lark, Token, Transformer, v_args

from paycell.errors import RuleProblem, RuleSetInvalid, RuleSyntaxError
from paycell.money import MoneyError, parse_amount
from paycell.rules import ast

MONEY_MINOR_MAX = 10**18
UNIT_S = {"second": 1, "minute": 60, "hour": 3_600, "day": 86_400}
KINDS = {"payments": None, "payins": "payin", "payouts": "payout", "transfers": "transfer"}

# How an expected terminal reads in an error message.
_TERMINAL_WORDS = {
    "FIELD": "a field (amount, country, model.score, ...)",
    "NUMBER": "a number",
    "STRING": 'a quoted text ("...")',
    "CURRENCY": "a currency code (USD, EUR, ...)",
    "UNIT": "a time unit (minutes, hours, days)",
    "LIST_REF": "a named list (list:name)",
    "TAG": "a tag",
    "OP": "a comparison (=, !=, <, <=, >, >=)",
    "$END": "the end of the rules",
}


@functools.cache
def _parser() -> Lark:
    grammar = resources.files("paycell.rules").joinpath("grammar.lark").read_text()
    return Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=True)


def _expected_words(names: set[str]) -> list[str]:
    parser = _parser()
    words = set()
    for name in names:
        if name in _TERMINAL_WORDS:
            words.add(_TERMINAL_WORDS[name])
            continue
        pattern = parser.get_terminal(name).pattern
        words.add(f"'{pattern.value}'" if pattern.type == "str" else name.lower())
    return sorted(words)


def _syntax_error(error: lark.exceptions.UnexpectedInput, text: str) -> RuleSyntaxError:
    if isinstance(error, lark.exceptions.UnexpectedToken):
        token = error.token
        found = "the end of the rules" if token.type == "$END" else f"'{token.value}'"
        line, column = error.line, error.column
        if token.type == "$END":  # lark gives -1 at the end of the text
            line = text.count("\n") + 1
            column = len(text) - (text.rfind("\n") + 1) + 1
        # The interactive parser knows what the state really accepts; `expected` may list tokens
        # that a default reduction would reject one step later.
        expected = error.interactive_parser.accepts() if error.interactive_parser else error.expected
        return RuleSyntaxError(line, column, _expected_words(set(expected)), found)
    if isinstance(error, lark.exceptions.UnexpectedCharacters):
        found = f"'{text[error.pos_in_stream]}'"
        return RuleSyntaxError(error.line, error.column, _expected_words(set(error.allowed)), found)
    raise error  # UnexpectedEOF: only raised by the Earley parser, not used here


def parse_rules(text: str) -> ast.RuleSet:
    """Parse `text` into a RuleSet; RuleSyntaxError or RuleSetInvalid (bad literals) if it fails."""
    try:
        tree = _parser().parse(text)
    except lark.exceptions.UnexpectedInput as error:
        raise _syntax_error(error, text) from None
    builder = _Builder(text)
    rule_set = builder.transform(tree)
    if builder.problems:
        raise RuleSetInvalid(builder.problems)
    return rule_set


def _at(token_or_meta) -> dict[str, int]:
    return {"line": token_or_meta.line, "column": token_or_meta.column}


class _Builder(Transformer):
    def __init__(self, text: str):
        super().__init__()
        self.text = text
        self.problems: list[RuleProblem] = []

    def _problem(self, token: Token, message: str) -> None:
        self.problems.append(RuleProblem(token.line, token.column, message))

    @v_args(meta=True)
    def start(self, meta, rules):
        return ast.RuleSet(rules=tuple(rules))

    @v_args(meta=True)
    def rule(self, meta, children):
        action, reason, (condition, condition_text), triggers, tags = children
        reason = condition_text if reason is None else reason.value[1:-1]
        return ast.Rule(**_at(meta), action=action, reason=reason, condition=condition,
                        triggers=triggers or ast.TRIGGERS, tags=tags or ())

    @v_args(meta=True)
    def condition(self, meta, children):
        return children[0], " ".join(self.text[meta.start_pos:meta.end_pos].split())

    def action(self, children):
        return str(children[0])

    def trigger(self, children):
        return str(children[0])

    def triggers(self, children):
        return tuple(dict.fromkeys(children))

    def tags(self, children):
        return tuple(dict.fromkeys(str(t) for t in children))

    @v_args(meta=True)
    def or_(self, meta, children):
        return ast.Or(**_at(meta), operands=tuple(children))

    @v_args(meta=True)
    def and_(self, meta, children):
        return ast.And(**_at(meta), operands=tuple(children))

    @v_args(meta=True)
    def negation(self, meta, children):
        return ast.Not(**_at(meta), operand=children[0])

    @v_args(meta=True)
    def comparison(self, meta, children):
        left, op, right = children
        return ast.Comparison(**_at(meta), left=left, op=str(op), right=right)

    @v_args(meta=True)
    def membership(self, meta, children):
        operand, negated, values = children
        if isinstance(values, Token):  # LIST_REF
            return ast.Membership(**_at(meta), operand=operand, negated=negated is not None,
                                  list_name=values.value.removeprefix("list:"))
        return ast.Membership(**_at(meta), operand=operand, negated=negated is not None, values=values)

    def negated(self, children):
        return True

    def literal_list(self, children):
        return tuple(children)

    def field(self, children):
        (token,) = children
        return ast.Field(**_at(token), name=token.value)

    def money(self, children):
        number, currency = children
        try:
            amount_minor = parse_amount(number.value, currency.value, max_minor=MONEY_MINOR_MAX)
        except MoneyError as error:
            self._problem(number, str(error))
            amount_minor = 0  # never evaluated: a rule set with a problem is rejected whole
        return ast.MoneyLit(**_at(number), amount_minor=amount_minor, currency=currency.value)

    def number(self, children):
        (token,) = children
        return ast.NumberLit(**_at(token), value=Decimal(token.value))

    def duration(self, children):
        number, unit = children
        return ast.DurationLit(**_at(number), seconds=self._seconds(number, unit))

    def string(self, children):
        (token,) = children
        return ast.TextLit(**_at(token), value=token.value[1:-1])

    def _seconds(self, number: Token, unit: Token) -> int:
        if "." in number.value:
            self._problem(number, f"a duration is a whole number of {unit.value}, not {number.value}")
            return 0
        return int(number.value) * UNIT_S[unit.value.removesuffix("s")]

    def window(self, children):
        number, unit = children
        return self._seconds(number, unit)

    def kinds(self, children):
        return KINDS[children[0].value]

    def subject(self, children):
        return str(children[0])

    @v_args(meta=True)
    def count(self, meta, children):
        return ast.Aggregate(**_at(meta), function="count", kind=children[0], subject=children[1], window_s=children[2])

    @v_args(meta=True)
    def sum(self, meta, children):
        return ast.Aggregate(**_at(meta), function="sum", kind=children[0], subject=children[1], window_s=children[2])
