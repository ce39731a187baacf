"""The rule language's typed syntax tree: frozen msgspec Structs, one per construct.

Every node that a message can point at carries the line and column where it starts in the rule
file. Money literals are already integer minor units of their currency (converted by
paycell.money), scores are Decimals, durations and windows are whole seconds.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Literal, Union

import msgspec

Action = Literal["allow", "review", "block"]
Trigger = Literal["payin", "payout", "transfer", "schedule_creation"]
Subject = Literal["user", "instrument"]
Op = Literal["=", "!=", "<", "<=", ">", ">="]

TRIGGERS: tuple[Trigger, ...] = ("payin", "payout", "transfer", "schedule_creation")


class Node(msgspec.Struct, frozen=True, kw_only=True):
    line: int
    column: int


class Field(Node, tag=True):
    name: str


class MoneyLit(Node, tag=True):
    amount_minor: int
    currency: str


class NumberLit(Node, tag=True):
    value: Decimal


class DurationLit(Node, tag=True):
    seconds: int


class TextLit(Node, tag=True):
    value: str


class Aggregate(Node, tag=True):
    """count(...) or sum(amount of ...) of a subject's payments of one kind (None: every kind)
    in the last `window_s` seconds."""
    function: Literal["count", "sum"]
    kind: Trigger | None
    subject: Subject
    window_s: int


Literal_ = Union[MoneyLit, NumberLit, DurationLit, TextLit]
Operand = Union[Field, Aggregate, MoneyLit, NumberLit, DurationLit, TextLit]


class Comparison(Node, tag=True):
    left: Operand
    op: Op
    right: Operand


class Membership(Node, tag=True):
    """`operand [not] in [..]` (values) or `operand [not] in list:name` (list_name)."""
    operand: Operand
    negated: bool
    values: tuple[Literal_, ...] | None = None
    list_name: str | None = None


class Not(Node, tag=True):
    operand: Condition


class And(Node, tag=True):
    operands: tuple[Condition, ...]


class Or(Node, tag=True):
    operands: tuple[Condition, ...]


Condition = Union[Comparison, Membership, Not, And, Or]


class Rule(Node, frozen=True):
    """One rule. Its identity is its line in the rule set; `reason` defaults to the condition's
    own text; `triggers` lists every trigger when the rule names none."""
    action: Action
    reason: str
    condition: Condition
    triggers: tuple[Trigger, ...]
    tags: tuple[str, ...] = ()


class RuleSet(msgspec.Struct, frozen=True):
    rules: tuple[Rule, ...]
