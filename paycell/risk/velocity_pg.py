"""The rules' velocity aggregates, answered by Postgres in the statement that locks the order.

A rule set in force is known before the screen step locks its order, and so are its aggregates:
`count(payments of instrument in last 10 minutes)` is one SQL expression over the locked row `o`.
`Prefetch.for_rule_set` turns every aggregate of the rules that apply to a pay-in, pay-out or
transfer into such an expression, each guarded by the order kinds whose rules use it (a CASE that
Postgres does not enter for other kinds), and the screen step reads them all in its locking
statement: the rules cost no round trip of their own. `PrefetchedVelocity` then answers the
evaluator from those values.

Definitions (the same for every reader):
- the window is [created_at - window, created_at) of the payment being screened: the payment
  itself, and anything created after it, never count;
- `count` counts attempts, whatever became of them (card testing is mostly declines);
- `sum` adds the amounts, in one currency, of the payments that have not failed (as the daily
  limit of rules/guardrail.py): money in flight or moved;
- an instrument's payments are the user's own payments naming the same token (a pay-in's source,
  a pay-out's target). With a real provider a token names one customer's card or account, so
  nothing is lost by keeping to the user; the simulators' shared test tokens (`tok_card_ok`)
  would otherwise make every user's payments one instrument's.
Each is a range scan of the user's index of payment_request (user_id, created_at DESC), an
instrument's with a filter on its token.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import msgspec

from paycell.rules import ast
from paycell.rules.evaluate import VelocitySubject

KINDS = ("payin", "payout", "transfer")
_INSTRUMENT = "CASE o.kind WHEN 'payin' THEN o.from_acct WHEN 'payout' THEN o.to_acct END"


class AggregateKey(msgspec.Struct, frozen=True):
    function: str            # count or sum
    subject: ast.Subject
    kind: str | None
    window_s: int
    currency: str | None     # a sum's currency; None: the order's own


class Prefetch(msgspec.Struct, frozen=True):
    """SQL expressions over the locked order `o` and their parameters, numbered from `first_param`."""
    keys: tuple[AggregateKey, ...]
    expressions: tuple[str, ...]
    args: tuple

    @classmethod
    def for_rule_set(cls, rule_set: ast.RuleSet, first_param: int) -> Prefetch:
        kinds_by_key: dict[AggregateKey, set[str]] = {}
        for rule in rule_set.rules:
            applies = [t for t in rule.triggers if t in KINDS]
            if not applies:
                continue
            for key in _aggregates(rule.condition):
                kinds_by_key.setdefault(key, set()).update(applies)
        keys, expressions, args = [], [], []
        n = first_param
        for key, kinds in kinds_by_key.items():
            sql, params = _expression(key, n + 1)
            expressions.append(f"CASE WHEN o.kind = ANY(${n}::text[]) THEN ({sql}) END")
            args.append(sorted(kinds))
            args.extend(params)
            n += 1 + len(params)
            keys.append(key)
        return cls(tuple(keys), tuple(expressions), tuple(args))

    def values(self, row_values: Iterable) -> dict[AggregateKey, int]:
        return {key: value for key, value in zip(self.keys, row_values, strict=True) if value is not None}


def _aggregates(node: ast.Condition) -> Iterator[AggregateKey]:
    match node:
        case ast.And(operands=operands) | ast.Or(operands=operands):
            for operand in operands:
                yield from _aggregates(operand)
        case ast.Not(operand=operand):
            yield from _aggregates(operand)
        case ast.Comparison(left=left, right=right):
            for side, other in ((left, right), (right, left)):
                if isinstance(side, ast.Aggregate):
                    yield AggregateKey(side.function, side.subject, side.kind, side.window_s,
                                       _sum_currency(side, other))


def _sum_currency(node: ast.Aggregate, other: ast.Operand) -> str | None:
    # A sum takes its currency from the other side: a literal's, or the payment's own (`amount`).
    if node.function == "sum" and isinstance(other, ast.MoneyLit):
        return other.currency
    return None


def _expression(key: AggregateKey, n: int) -> tuple[str, list]:
    """The aggregate as a scalar subquery over payment_request `r`, with its parameters from $n."""
    params: list = [float(key.window_s)]
    where = [f"r.created_at >= o.created_at - make_interval(secs => ${n})", "r.created_at < o.created_at"]
    if key.subject == "user":
        where.append("r.user_id = o.user_id")
    else:
        where.append("r.user_id = o.user_id")
        where.append(f"(r.kind = 'payin' AND r.from_acct = {_INSTRUMENT} OR r.kind = 'payout' AND r.to_acct = {_INSTRUMENT})")
    if key.kind is not None:
        params.append(key.kind)
        where.append(f"r.kind = ${n + len(params) - 1}")
    if key.function == "count":
        select = "count(*)"
    else:
        select = "coalesce(sum(r.amount_minor), 0)::bigint"
        where.append("r.status <> 'failed'")
        if key.currency is None:
            where.append("r.currency = o.currency")
        else:
            params.append(key.currency)
            where.append(f"r.currency = ${n + len(params) - 1}")
    return f"SELECT {select} FROM payment_request r WHERE {' AND '.join(where)}", params


class PrefetchedVelocity:
    """A VelocitySource answering from the values read with the order. An aggregate it was not
    given (a rule set changed between planning and evaluation cannot happen within one screen,
    so this is a bug) raises LookupError rather than guess."""

    def __init__(self, values: dict[AggregateKey, int], order_currency: str):
        self._values, self._currency = values, order_currency

    def _get(self, key: AggregateKey) -> int:
        try:
            return self._values[key]
        except KeyError:
            raise LookupError(f"aggregate {key} was not prefetched") from None

    def count(self, subject: VelocitySubject, kind: str | None, window_s: int) -> int:
        return self._get(AggregateKey("count", subject.of, kind, window_s, None))

    def sum_minor(self, subject: VelocitySubject, kind: str | None, currency: str, window_s: int) -> int:
        key = AggregateKey("sum", subject.of, kind, window_s, None if currency == self._currency else currency)
        if key not in self._values:  # a literal in the order's own currency was planned under its code
            key = msgspec.structs.replace(key, currency=currency if key.currency is None else None)
        return self._get(key)
