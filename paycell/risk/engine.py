"""The risk engine of the screen step: the rules in force, their velocity aggregates, the model's
score, one Decision per payment.

The screen step asks for a `Plan` before it locks its order (the rule set in force and the SQL of
its aggregates: paycell/risk/velocity_pg.py; with a model in force, the SQL of the model's
features: paycell/risk/history_pg.py), reads the plan's expressions in its locking statement
(the risk step costs no round trip of its own), and then `assess`es the order: the facts the rules
read (the request's IP and country, the instrument's country and age), the model's score when a
model is promoted, and the rules' evaluation. The Assessment is what the event log keeps: the action, the reasons and tags, every
fired rule by line, the rule-set and model versions and the score.
"""
from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Protocol

import asyncpg
import msgspec

from paycell.rules import ast
from paycell.rules.evaluate import Decision, PaymentFacts, evaluate
from paycell.risk.history_pg import features_of, snapshot_expression
from paycell.risk.velocity_pg import Prefetch, PrefetchedVelocity
from paycell.workflow import Order

SCORE_DIGITS = 4  # a score is written to the event log as a decimal string of this many places


class InForce(Protocol):
    version: int
    rule_set: ast.RuleSet
    lists: Mapping[str, frozenset[str]]
    config_version: int


class RuleSource(Protocol):
    async def get(self, conn: asyncpg.Connection) -> InForce: ...


class Scorer(Protocol):
    """The promoted model of this process (paycell/risk/scorer.py)."""
    version: int | None

    async def refresh(self, conn: asyncpg.Connection) -> None: ...

    def score_with_version(self, features) -> tuple[float | None, int | None]: ...


# What the screen step reads about the order's context in its locking statement (no parameters).
_REQUEST = "SELECT {col} FROM payment_request r WHERE r.user_id = o.user_id AND r.payment_id = o.payment_id"
# The instrument's latest attachment by the user at or before the payment (the one the gate found
# attached), as the training's history reads it (paycell/risk/history.py).
_INSTRUMENT = ("SELECT i.{col} FROM instrument i WHERE i.user_id = o.user_id AND i.created_at <= o.created_at"
               " AND i.provider_token = CASE o.kind WHEN 'payin' THEN o.from_acct WHEN 'payout' THEN o.to_acct END"
               " ORDER BY i.created_at DESC LIMIT 1")
CONTEXT_EXPRESSIONS = (
    _REQUEST.format(col="host(r.client_ip)"),
    _REQUEST.format(col="r.client_country"),
    _INSTRUMENT.format(col="created_at"),
    _INSTRUMENT.format(col="country"),
)


_CLIENT_IP = _REQUEST.format(col="r.client_ip")


class Plan(msgspec.Struct, frozen=True):
    """What the locking statement reads for the risk step: CONTEXT_EXPRESSIONS, the rules'
    aggregates, and the model's features snapshot when `scored`; `args` are their parameters."""
    in_force: object  # InForce
    prefetch: Prefetch
    scored: bool
    expressions: tuple[str, ...]
    args: tuple

    @classmethod
    def build(cls, in_force: InForce, first_param: int, *, scored: bool) -> Plan:
        prefetch = Prefetch.for_rule_set(in_force.rule_set, first_param)
        expressions, args = CONTEXT_EXPRESSIONS + prefetch.expressions, prefetch.args
        if scored:
            snapshot, snapshot_args = snapshot_expression(first_param + len(args), ip=f"({_CLIENT_IP})")
            expressions, args = expressions + (snapshot,), args + snapshot_args
        return cls(in_force=in_force, prefetch=prefetch, scored=scored, expressions=expressions, args=args)


class Assessment(msgspec.Struct, frozen=True, kw_only=True):
    decision: Decision
    rule_set_version: int
    model_version: int | None
    score: float | None

    @property
    def action(self) -> str:
        return self.decision.action

    def event_data(self) -> dict:
        """The decision as the event log keeps it (no floats: the score is a decimal string)."""
        return {
            "verdict": self.decision.action,
            "reasons": list(self.decision.reasons),
            "tags": list(self.decision.tags),
            "fired": [{"line": r.line, "action": r.action, "reason": r.reason} for r in self.decision.fired],
            "rule_set_version": self.rule_set_version,
            "model_version": self.model_version,
            "score": None if self.score is None else f"{self.score:.{SCORE_DIGITS}f}",
        }


class RiskEngine:
    """One per worker process: the rule set and the model in force, refreshed as they change."""

    def __init__(self, rules: RuleSource, scorer: Scorer | None = None, *, first_param: int):
        self._rules, self._scorer, self._first_param = rules, scorer, first_param
        self._plan: Plan | None = None

    async def plan(self, conn: asyncpg.Connection) -> Plan:
        """The rule set in force and its aggregates' SQL; refreshes the model too, and reads its
        features when one is in force."""
        in_force = await self._rules.get(conn)
        scored = False
        if self._scorer is not None:
            await self._scorer.refresh(conn)
            scored = self._scorer.version is not None
        plan = self._plan
        if plan is None or plan.in_force is not in_force or plan.scored != scored:
            plan = self._plan = Plan.build(in_force, self._first_param, scored=scored)
        return plan

    def assess(self, plan: Plan, order: Order, values: tuple, *, connector: str | None = None) -> Assessment:
        """The decision on `order`; `values` are the plan's expressions' values from the locking
        statement. CPU only: no I/O, nothing awaited."""
        client_ip, client_country, attached_at, instrument_country, *rest = values
        aggregates = rest[:len(plan.prefetch.keys)]
        score = model_version = None
        if plan.scored and self._scorer is not None:
            features = features_of(order, rest[len(plan.prefetch.keys)], ip=client_ip, country=client_country,
                                   instrument_attached_at=attached_at)
            score, model_version = self._scorer.score_with_version(features)
        facts = PaymentFacts(
            trigger=order.kind, direction=order.kind, amount_minor=order.amount_minor, currency=order.currency,
            payment_option=order.payment_option, user_id=order.user_id, connector=connector,
            instrument=_instrument_of(order), instrument_country=instrument_country,
            instrument_age_s=None if attached_at is None else _age_s(attached_at, order),
            ip=client_ip, country=client_country, model_score=score)
        in_force = plan.in_force
        velocity = PrefetchedVelocity(plan.prefetch.values(aggregates), order.currency)
        decision = evaluate(in_force.rule_set, facts, velocity, in_force.lists)
        return Assessment(decision=decision, rule_set_version=in_force.version, model_version=model_version,
                          score=score)


def _instrument_of(order: Order) -> str | None:
    return {"payin": order.from_acct, "payout": order.to_acct}.get(order.kind)


def _age_s(attached_at: datetime.datetime, order: Order) -> int:
    created = order.created_at or datetime.datetime.now(datetime.timezone.utc)
    return max(0, int((created - attached_at).total_seconds()))
