"""Matching rules as data, and the SQL they compile to.

A rule set (JSON, e.g. paycell/reconcile/rules.json) says how a provider's lines find paycell's
orders and when a pair agrees, in the manner of Blnk's matching rules:

    {"name": "default", "strategy": "one_to_one", "key": "order_id",
     "criteria": [{"field": "currency", "operator": "equals"},
                  {"field": "amount", "operator": "drift_percent", "allowable_drift": "0.5"}]}

- strategy: one_to_one (a line <-> an order; a second line of the same category for the same order
  is a duplicate), many_to_one (several lines <-> one order: their amounts are summed, e.g. partial
  captures), one_to_many (one line <-> all orders of one payment: the line's reference is the
  payment id, the orders' amounts are summed).
- key: order_id (the line's merchant reference is paycell's order id, else its provider reference
  is looked up in the orders' psp_reference) or payment_id (one_to_many).
- criteria: field amount with operator equals, drift_percent (|line - order| <= order x drift %)
  or drift_minor (|line - order| <= drift minor units); field currency with operator equals.
  A failed currency criterion classifies the line currency_mismatch, a failed amount criterion
  amount_mismatch.

Everything is compiled into one statement over the staged lines (a temp table the file was
COPYed into): names come from the whitelists here, values are bound parameters.
"""
from __future__ import annotations

import decimal
from pathlib import Path
from typing import Literal

import msgspec

from paycell.errors import InvalidRequest

DEFAULT_RULES_PATH = Path(__file__).with_name("rules.json")
UUID_RE = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
LIVE_STATES = ("psp_submitting", "psp_pending", "requires_action", "psp_succeeded", "needs_attention")


class Criterion(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    field: Literal["amount", "currency"]
    operator: Literal["equals", "drift_percent", "drift_minor"] = "equals"
    allowable_drift: decimal.Decimal = decimal.Decimal(0)


class RuleSet(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    strategy: Literal["one_to_one", "many_to_one", "one_to_many"] = "one_to_one"
    key: Literal["order_id", "payment_id"] = "order_id"
    criteria: tuple[Criterion, ...] = (Criterion("currency"), Criterion("amount"))

    def __post_init__(self) -> None:
        if (self.strategy == "one_to_many") != (self.key == "payment_id"):
            raise ValueError("one_to_many matches by payment_id, the others by order_id")
        for c in self.criteria:
            if c.field == "currency" and c.operator != "equals":
                raise ValueError("currency is compared with equals only")
            if c.allowable_drift < 0 or c.allowable_drift > 100:
                raise ValueError("allowable_drift must be between 0 and 100")


def load(data: bytes) -> RuleSet:
    """A rule set from JSON; InvalidRequest says what is wrong with it."""
    try:
        return msgspec.json.decode(data, type=RuleSet)
    except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
        raise InvalidRequest(f"not a matching rule set: {exc}") from None


def default() -> RuleSet:
    return load(DEFAULT_RULES_PATH.read_bytes())


def _predicates(rules: RuleSet, args: list) -> tuple[str, str]:
    """(currency agrees, amount agrees) as SQL over `l` (the line side) and `o` (the order side)."""
    currency, amount = ["l.currencies = 1 AND o.currencies = 1"], []
    for c in rules.criteria:
        if c.field == "currency":
            currency.append("l.currency = o.currency")
            continue
        if c.operator == "equals":
            amount.append("l.amount_minor = o.amount_minor")
            continue
        args.append(c.allowable_drift)
        n = len(args) + 2  # $1 and $2 are the connector and the owner
        amount.append(f"abs(l.amount_minor - o.amount_minor) <= o.amount_minor * ${n}::numeric / 100"
                      if c.operator == "drift_percent" else f"abs(l.amount_minor - o.amount_minor) <= ${n}::numeric")
    return " AND ".join(currency), " AND ".join(amount) or "true"


def classify_sql(rules: RuleSet) -> tuple[str, list]:
    """A SELECT of (line_no, payment_order_id, outcome) for every staged line. Parameters: $1 the
    connector, $2 the owner id, then the rule set's drifts."""
    args: list = []
    currency_ok, amount_ok = _predicates(rules, args)
    if rules.key == "payment_id":
        resolve = f"""
            SELECT s.*, NULL::uuid AS payment_order_id,
                   (SELECT r.payment_id FROM payment_request r
                     WHERE s.order_ref ~ '{UUID_RE}' AND r.payment_id = s.order_ref::uuid LIMIT 1) AS group_key
              FROM recon_stage s"""
        order_key = "o.payment_id"
    else:
        resolve = f"""
            SELECT s.*, coalesce(by_id.payment_order_id, by_ref.payment_order_id) AS payment_order_id,
                   coalesce(by_id.payment_order_id, by_ref.payment_order_id) AS group_key
              FROM recon_stage s
              LEFT JOIN payment_order by_id
                     ON by_id.payment_order_id = (CASE WHEN s.order_ref ~ '{UUID_RE}' THEN s.order_ref::uuid END)
              LEFT JOIN payment_order by_ref
                     ON by_id.payment_order_id IS NULL AND s.psp_reference IS NOT NULL
                    AND by_ref.psp = $1 AND by_ref.psp_reference = s.psp_reference"""
        order_key = "o.payment_order_id"
    one = rules.strategy == "one_to_one"
    line_side = ("""SELECT line_no, group_key, category, amount_minor, currency, 1 AS currencies
                      FROM ranked WHERE group_key IS NOT NULL""" if one else
                 """SELECT r.line_no, g.group_key, g.category, g.amount_minor, g.currency, g.currencies
                      FROM ranked r JOIN (SELECT group_key, category, sum(amount_minor) AS amount_minor,
                                                 min(currency) AS currency, count(DISTINCT currency) AS currencies
                                            FROM ranked WHERE group_key IS NOT NULL
                                           GROUP BY group_key, category) g USING (group_key, category)""")
    duplicate = ("""r.nth > 1 OR EXISTS (SELECT 1 FROM recon_line p
                                         WHERE p.payment_order_id = r.group_key AND p.owner_id = $2
                                           AND p.category = r.category AND p.outcome <> 'duplicate')"""
                 if one else "false")
    live = ", ".join(f"'{s}'" for s in LIVE_STATES)
    sql = f"""
WITH resolved AS ({resolve}
), ranked AS (
    SELECT r.*, row_number() OVER (PARTITION BY r.group_key, r.category ORDER BY r.line_no) AS nth FROM resolved r
), l AS ({line_side}
), o AS (
    SELECT {order_key} AS group_key, sum(o.amount_minor) AS amount_minor, min(o.currency) AS currency,
           count(DISTINCT o.currency) AS currencies,
           CASE WHEN count(DISTINCT o.kind) = 1 THEN min(o.kind) ELSE 'mixed' END AS kind,
           CASE WHEN count(DISTINCT o.payment_order_status) = 1 THEN min(o.payment_order_status) ELSE 'mixed' END
               AS status,
           bool_and(o.psp IS NOT DISTINCT FROM $1::text) AS ours
      FROM payment_order o WHERE {order_key} IN (SELECT group_key FROM ranked WHERE group_key IS NOT NULL)
     GROUP BY 1
)
SELECT r.line_no, r.payment_order_id,
       CASE
         WHEN r.group_key IS NULL THEN
              CASE WHEN r.category IN ('payin', 'payout', 'return', 'refund') THEN 'missing_ours'
                   ELSE 'not_a_payment' END
         WHEN {duplicate} THEN 'duplicate'
         WHEN r.category IN ('fee', 'transfer_out') THEN 'not_a_payment'
         WHEN NOT o.ours THEN 'unexpected_line'
         WHEN NOT ({currency_ok}) THEN 'currency_mismatch'
         WHEN r.category IN ('payin', 'payout') THEN
              CASE WHEN o.kind <> r.category THEN 'unexpected_line'
                   WHEN NOT ({amount_ok}) THEN 'amount_mismatch'
                   WHEN o.status IN ('completed', 'returned') THEN 'matched'
                   WHEN o.status IN ({live}) THEN 'status_settled_order_live'
                   WHEN o.status = 'failed' THEN 'status_settled_order_failed'
                   ELSE 'unexpected_line' END
         WHEN r.category = 'return' THEN
              CASE WHEN NOT ({amount_ok}) THEN 'amount_mismatch'
                   WHEN o.status = 'completed' THEN 'status_returned_order_completed'
                   WHEN o.status IN ('returned', 'needs_attention') THEN 'matched'
                   ELSE 'unexpected_line' END
         ELSE 'unexpected_line'
       END AS outcome
  FROM ranked r
  LEFT JOIN l ON l.line_no = r.line_no
  LEFT JOIN o ON o.group_key = r.group_key
 WHERE $2::text IS NOT NULL"""
    return sql, args
