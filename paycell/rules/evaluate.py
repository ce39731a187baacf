"""The evaluator: walks a checked RuleSet over one payment's facts and returns a Decision.

Rules apply only on their triggers. Every rule that applies is evaluated (the decision names
every rule that fired, for the payment's history), conditions short-circuit left to right, and
the velocity aggregates are asked for only when a condition reaches them. Evaluation is
synchronous: the screen step reads every aggregate a rule set may ask for in the statement that
locks the order (paycell/risk/velocity_pg.py), so nothing here waits on I/O.

A comparison or membership test on a fact the payment does not have (a transfer's instrument,
a request without an IP, no model score) is false, and so is a money comparison across
currencies: `amount > 500.00 USD` says nothing about a payment in JPY. A threshold for each
currency is its own comparison (`amount > 500.00 USD or amount > 75000 JPY`).
"""
from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Protocol

import msgspec

from paycell.rules import ast

ACTION_RANK = {"allow": 0, "review": 1, "block": 2}
_OPS: dict[str, Callable[[object, object], bool]] = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


class PaymentFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What the rules may read about one payment (or schedule) at its trigger."""
    trigger: ast.Trigger
    direction: str  # payin, payout or transfer (a schedule's: the kind it will create)
    amount_minor: int
    currency: str
    payment_option: str
    user_id: str
    connector: str | None = None
    instrument: str | None = None  # the PSP's token of the card or account; None for a transfer
    instrument_country: str | None = None
    instrument_age_s: int | None = None
    ip: str | None = None
    country: str | None = None  # the request's country (from its IP)
    model_score: float | None = None


class VelocitySubject(msgspec.Struct, frozen=True):
    """Whose payments an aggregate counts: a user's (by id) or an instrument's (by token)."""
    of: ast.Subject
    id: str


class VelocitySource(Protocol):
    """Answers the velocity aggregates over past payments (in production from values read with
    the order). `kind` None counts every kind; `sum_minor` sums those in `currency` only."""

    def count(self, subject: VelocitySubject, kind: str | None, window_s: int) -> int: ...

    def sum_minor(self, subject: VelocitySubject, kind: str | None, currency: str, window_s: int) -> int: ...


class FiredRule(msgspec.Struct, frozen=True):
    line: int
    action: ast.Action
    reason: str
    tags: tuple[str, ...]


class Decision(msgspec.Struct, frozen=True):
    """The outcome: `action`, the reasons of the rules that decided it, the tags of every rule
    that fired and every fired rule (by line). No rule fired: allow, with no reasons."""
    action: ast.Action
    reasons: tuple[str, ...]
    tags: tuple[str, ...]
    fired: tuple[FiredRule, ...]


class UnknownList(LookupError):
    """A rule names a list the caller did not supply: the rule set was compiled against other lists."""


FIELD_READERS: dict[str, Callable[[PaymentFacts], object]] = {
    "amount": lambda f: (f.amount_minor, f.currency),
    "currency": lambda f: f.currency,
    "direction": lambda f: f.direction,
    "option": lambda f: f.payment_option,
    "connector": lambda f: f.connector,
    "user": lambda f: f.user_id,
    "instrument": lambda f: f.instrument,
    "instrument.country": lambda f: f.instrument_country,
    "instrument.age": lambda f: f.instrument_age_s,
    "ip": lambda f: f.ip,
    "ip.country": lambda f: f.country,
    "model.score": lambda f: None if f.model_score is None else _score(f.model_score),
}


def _score(score: float) -> Decimal:
    # The float's shortest decimal spelling, so that a score of 0.8 equals the literal 0.8
    # (the binary float 0.8 is slightly above it and would fire `model.score > 0.8`).
    return Decimal(repr(score))


def decide(fired: list[FiredRule]) -> Decision:
    """Combine the fired rules: block > review > allow.

    Stripe Radar orders Request 3DS > Allow > Block > Review: there an allow rule is an
    operator's explicit exemption (a trusted customer) that overrides blocks. paycell has no
    3DS action here, and puts block first because a block usually stands for a fact that no
    exemption should lift (a blocked country, a sanctioned user, card testing in progress),
    because the cost of the two mistakes is asymmetric (a wrongly blocked payment can be retried
    after review; a wrongly allowed one moves money that may not come back), and because the
    order then never depends on which rule an author wrote: adding an allow rule can only turn
    "nothing fired" into "allow", never open a path a block closes. An exemption is written
    into the block rule itself (`... and user not in list:trusted_users`).
    """
    if not fired:
        return Decision(action="allow", reasons=(), tags=(), fired=())
    action = max((rule.action for rule in fired), key=ACTION_RANK.__getitem__)
    reasons = tuple(dict.fromkeys(rule.reason for rule in fired if rule.action == action))
    tags = tuple(dict.fromkeys(tag for rule in fired for tag in rule.tags))
    return Decision(action=action, reasons=reasons, tags=tags, fired=tuple(fired))


def evaluate(rule_set: ast.RuleSet, facts: PaymentFacts, velocity: VelocitySource,
                   lists: Mapping[str, frozenset[str]]) -> Decision:
    """Evaluate every rule of `rule_set` whose triggers include `facts.trigger`."""
    walker = _Walker(facts, velocity, lists)
    fired = [FiredRule(line=rule.line, action=rule.action, reason=rule.reason, tags=rule.tags)
             for rule in rule_set.rules
             if facts.trigger in rule.triggers and walker.holds(rule.condition)]
    return decide(fired)


class _Walker:
    def __init__(self, facts: PaymentFacts, velocity: VelocitySource, lists: Mapping[str, frozenset[str]]):
        self.facts, self.velocity, self.lists = facts, velocity, lists

    def holds(self, node: ast.Condition) -> bool:
        match node:
            case ast.And(operands=operands):
                for operand in operands:
                    if not self.holds(operand):
                        return False
                return True
            case ast.Or(operands=operands):
                for operand in operands:
                    if self.holds(operand):
                        return True
                return False
            case ast.Not(operand=operand):
                return not self.holds(operand)
            case ast.Comparison():
                return self.compare(node)
            case ast.Membership():
                return self.member(node)
        raise AssertionError(node)

    def compare(self, node: ast.Comparison) -> bool:
        # A sum takes its currency from the other side, so that side is read first.
        if isinstance(node.left, ast.Aggregate) and node.left.function == "sum":
            right = self.value(node.right, None)
            left = self.value(node.left, right)
        else:
            left = self.value(node.left, None)
            right = self.value(node.right, left)
        if left is None or right is None:
            return False
        if isinstance(left, tuple):  # money: (amount_minor, currency)
            if left[1] != right[1]:
                return False
            left, right = left[0], right[0]
        return _OPS[node.op](left, right)

    def value(self, node: ast.Operand, other: object) -> object:
        """The operand's value; money as (amount_minor, currency); None when the fact is missing."""
        match node:
            case ast.Field(name=name):
                return FIELD_READERS[name](self.facts)
            case ast.MoneyLit(amount_minor=amount_minor, currency=currency):
                return amount_minor, currency
            case ast.NumberLit(value=value):
                return value
            case ast.DurationLit(seconds=seconds):
                return seconds
            case ast.TextLit(value=value):
                return value
            case ast.Aggregate():
                return self.aggregate(node, other)
        raise AssertionError(node)

    def aggregate(self, node: ast.Aggregate, other: object) -> object:
        subject_id = self.facts.user_id if node.subject == "user" else self.facts.instrument
        if subject_id is None:
            return None
        subject = VelocitySubject(of=node.subject, id=subject_id)
        if node.function == "count":
            return self.velocity.count(subject, node.kind, node.window_s)
        if other is None:
            return None
        currency = other[1]
        return self.velocity.sum_minor(subject, node.kind, currency, node.window_s), currency

    def member(self, node: ast.Membership) -> bool:
        value = FIELD_READERS[node.operand.name](self.facts)
        if value is None:
            return False
        if node.list_name is not None:
            if node.list_name not in self.lists:
                raise UnknownList(f"no list named {node.list_name} was supplied")
            found = value in self.lists[node.list_name]
        else:
            found = value in {literal.value for literal in node.values}
        return found != node.negated
