"""The model's features online: the History of paycell/risk/features.py answered by Postgres.

Everything the features need about the order's user is ONE scalar expression over the order row
`o` (`snapshot_expression`: a ROW of SNAPSHOT_NAMES), which the screen step reads in the statement
that locks the order: scoring costs no round trip and no lock-hold time of its own. `features_of`
turns that row into a `SnapshotHistory` that answers the History protocol for that one payment and
calls the same `features()` the training calls offline: a feature is defined once.
`online_features(conn, order, ...)` reads the same expression in a statement of its own (for tests
and benchmarks); tests/risk/test_features_online.py checks that online and offline agree payment
by payment on a synthetic history loaded into Postgres.

What each answer is read from (the definitions are features.History's):
- the user's windows, the instrument's (the user's payments naming it) and the declines: one
  range scan of the user's last 24 h (index payment_request (user_id, created_at)), with FILTERs;
- transfers received by the user and by a transfer's payee: the partial index of transfers on
  (to_acct, created_at) (migration 0019);
- the usual amount, the countries and IPs seen, whether the instrument was used: the user's last
  RECENT_MAX payments (the same index, backwards, LIMIT); the home country: its first payment.
A payment failed by its provider is a decline; one paycell failed itself (a risk block, no funds,
a deadline) is not: workflow.PLATFORM_FAILURES names those.
Everything is read as of the order's created_at (strictly before it), whatever the time of reading.
"""
from __future__ import annotations

import datetime
from collections.abc import Mapping

import asyncpg

from paycell.risk import features as F
from paycell.risk.features import Features, Window
from paycell.workflow import PLATFORM_FAILURES, Order

# Over the order `o` (payment_order, or a row of the same columns): its user, currency, accept time,
# instrument, the user's own wallet and a transfer's payee. {ip} is the request's client IP as SQL,
# {failures} the parameter of the platform's failure codes.
_AT = "o.created_at"
_INSTRUMENT = "CASE o.kind WHEN 'payin' THEN o.from_acct WHEN 'payout' THEN o.to_acct END"
_DECLINED = "r.status = 'failed' AND r.failure_code <> ALL({failures}::text[])"
_INSTRUMENT_MATCH = f"(r.kind = 'payin' AND r.from_acct = {_INSTRUMENT} OR r.kind = 'payout' AND r.to_acct = {_INSTRUMENT})"
_SINCE = f"{_AT} - interval '{{window}}'"

SNAPSHOT_NAMES = (
    "registered_at", "user_10m", "user_10m_minor", "user_1h", "user_1h_minor", "user_24h", "user_24h_minor",
    "instrument_10m", "instrument_10m_minor", "instrument_24h", "instrument_24h_minor", "instrument_declines_1h",
    "user_declines_1h", "usual_minor", "instrument_used", "seen", "ip_seen", "last_country", "home_country",
    "user_received", "counterparty_received",
)

_SNAPSHOT = f"""
WITH day AS (
    SELECT r.kind, r.amount_minor, r.currency, r.created_at, r.status, r.failure_code, r.from_acct, r.to_acct
      FROM payment_request r
     WHERE r.user_id = o.user_id AND r.created_at >= {_SINCE.format(window='24 hours')} AND r.created_at < {_AT}
), recent AS (
    SELECT r.kind, r.amount_minor, r.currency, r.created_at, r.status, r.from_acct, r.to_acct,
           r.client_ip, r.client_country
      FROM payment_request r
     WHERE r.user_id = o.user_id AND r.created_at < {_AT}
     ORDER BY r.created_at DESC, r.payment_id DESC LIMIT {F.RECENT_MAX}
)
SELECT ROW(
    (SELECT registered_at FROM app_user u WHERE u.user_id = o.user_id),
    w.user_10m, w.user_10m_minor, w.user_1h, w.user_1h_minor, w.user_24h, w.user_24h_minor,
    w.instrument_10m, w.instrument_10m_minor, w.instrument_24h, w.instrument_24h_minor,
    w.instrument_declines_1h, w.user_declines_1h,
    (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY u.amount_minor)
       FROM (SELECT amount_minor FROM recent WHERE currency = o.currency AND status = 'succeeded'
              ORDER BY created_at DESC LIMIT {F.USUAL_SAMPLE_MAX}) u),
    (SELECT coalesce(bool_or({_INSTRUMENT_MATCH}), false) FROM recent r),
    (SELECT array_agg(DISTINCT client_country::text) FILTER (WHERE client_country IS NOT NULL) FROM recent),
    (SELECT coalesce(bool_or(client_ip = {{ip}}), false) FROM recent),
    (SELECT client_country::text FROM recent ORDER BY created_at DESC LIMIT 1),
    (SELECT r.client_country::text FROM payment_request r WHERE r.user_id = o.user_id AND r.created_at < {_AT}
      ORDER BY r.created_at, r.payment_id LIMIT 1),
    (SELECT count(*) FROM payment_request r WHERE r.kind = 'transfer' AND r.to_acct = {{wallet}}::text || o.user_id
        AND r.created_at >= {_SINCE.format(window='24 hours')} AND r.created_at < {_AT}),
    CASE WHEN o.kind = 'transfer' THEN
    (SELECT count(*) FROM payment_request r WHERE r.kind = 'transfer' AND r.to_acct = o.to_acct
        AND r.created_at >= {_SINCE.format(window='24 hours')} AND r.created_at < {_AT}) ELSE 0 END)
FROM (
    SELECT
        count(*) FILTER (WHERE r.created_at >= {_SINCE.format(window='10 minutes')}) AS user_10m,
        coalesce(sum(r.amount_minor) FILTER (WHERE r.created_at >= {_SINCE.format(window='10 minutes')}
                                              AND r.currency = o.currency), 0)::bigint AS user_10m_minor,
        count(*) FILTER (WHERE r.created_at >= {_SINCE.format(window='1 hour')}) AS user_1h,
        coalesce(sum(r.amount_minor) FILTER (WHERE r.created_at >= {_SINCE.format(window='1 hour')}
                                              AND r.currency = o.currency), 0)::bigint AS user_1h_minor,
        count(*) AS user_24h,
        coalesce(sum(r.amount_minor) FILTER (WHERE r.currency = o.currency), 0)::bigint AS user_24h_minor,
        count(*) FILTER (WHERE {_INSTRUMENT_MATCH} AND r.created_at >= {_SINCE.format(window='10 minutes')}) AS instrument_10m,
        coalesce(sum(r.amount_minor) FILTER (WHERE {_INSTRUMENT_MATCH} AND r.currency = o.currency
                                              AND r.created_at >= {_SINCE.format(window='10 minutes')}), 0)::bigint AS instrument_10m_minor,
        count(*) FILTER (WHERE {_INSTRUMENT_MATCH}) AS instrument_24h,
        coalesce(sum(r.amount_minor) FILTER (WHERE {_INSTRUMENT_MATCH} AND r.currency = o.currency), 0)::bigint AS instrument_24h_minor,
        count(*) FILTER (WHERE {_INSTRUMENT_MATCH} AND {_DECLINED} AND r.created_at >= {_SINCE.format(window='1 hour')})
            AS instrument_declines_1h,
        count(*) FILTER (WHERE {_DECLINED} AND r.created_at >= {_SINCE.format(window='1 hour')}) AS user_declines_1h
    FROM day r
) w
"""
_PLATFORM_FAILURES = sorted(PLATFORM_FAILURES)
WALLET_PREFIX = "wallet:"


def wallet_of(user_id: str) -> str:
    return WALLET_PREFIX + user_id


class OnlinePayment:
    """The order being scored, as features.PaymentFacts."""
    __slots__ = ("user_id", "kind", "amount_minor", "currency", "payment_option", "instrument",
                 "counterparty_user_id", "ip", "country", "created_at", "account_created_at",
                 "instrument_attached_at")

    def __init__(self, order: Order, *, ip: str | None, country: str | None, account_created_at: datetime.datetime,
                 instrument_attached_at: datetime.datetime | None):
        self.user_id, self.kind, self.amount_minor = order.user_id, order.kind, order.amount_minor
        self.currency, self.created_at = order.currency, order.created_at
        self.payment_option = "wallet" if order.kind == "transfer" else order.payment_option
        self.instrument = {"payin": order.from_acct, "payout": order.to_acct}.get(order.kind)
        self.counterparty_user_id = order.to_acct.removeprefix(WALLET_PREFIX) if order.kind == "transfer" else None
        self.ip, self.country = ip, country
        self.account_created_at, self.instrument_attached_at = account_created_at, instrument_attached_at


class SnapshotHistory:
    """features.History for one payment, from the row `_SNAPSHOT` read: it answers only the
    questions features() asks about that payment (anything else is a bug, and raises)."""

    def __init__(self, payment: OnlinePayment, row: Mapping[str, object]):
        self._p, self._r = payment, row

    def _check(self, user_id: str, before: datetime.datetime, currency: str | None = None) -> None:
        if user_id != self._p.user_id or before != self._p.created_at or currency not in (None, self._p.currency):
            raise LookupError("SnapshotHistory answers only about the payment it was read for")

    def user_window(self, user_id, currency, before, window) -> Window:
        self._check(user_id, before, currency)
        name = {F.MINUTES_10: "user_10m", F.HOUR_1: "user_1h", F.HOURS_24: "user_24h"}[window]
        return Window(self._r[name], self._r[name + "_minor"])

    def instrument_window(self, user_id, instrument, currency, before, window) -> Window:
        self._check(user_id, before, currency)
        name = {F.MINUTES_10: "instrument_10m", F.HOURS_24: "instrument_24h"}[window]
        return Window(self._r[name], self._r[name + "_minor"])

    def instrument_declines(self, user_id, instrument, before, window) -> int:
        self._check(user_id, before)
        assert window == F.HOUR_1
        return self._r["instrument_declines_1h"]

    def user_declines(self, user_id, before, window) -> int:
        self._check(user_id, before)
        assert window == F.HOUR_1
        return self._r["user_declines_1h"]

    def transfers_received(self, user_id, before, window) -> int:
        assert window == F.HOURS_24 and before == self._p.created_at
        if user_id == self._p.user_id:
            return self._r["user_received"]
        if user_id == self._p.counterparty_user_id:
            return self._r["counterparty_received"]
        raise LookupError(user_id)

    def usual_amount_minor(self, user_id, currency, before) -> int | None:
        self._check(user_id, before, currency)
        return self._r["usual_minor"]

    def instrument_used_before(self, user_id, instrument, before) -> bool:
        self._check(user_id, before)
        return self._r["instrument_used"]

    def countries(self, user_id, before):
        self._check(user_id, before)
        return self._r["home_country"], self._r["last_country"], frozenset(self._r["seen"] or ())

    def ip_seen(self, user_id, ip, before) -> bool:
        self._check(user_id, before)
        return ip is not None and self._r["ip_seen"]


def snapshot_expression(first_param: int, *, ip: str) -> tuple[str, tuple]:
    """The features' snapshot as one scalar expression over the order `o` (a ROW of SNAPSHOT_NAMES),
    for the statement that locks the order, with its parameters numbered from `first_param`; `ip` is
    the SQL of the request's client IP (inet)."""
    sql = _SNAPSHOT.format(ip=ip, failures=f"${first_param}", wallet=f"${first_param + 1}")
    return f"({sql})", (_PLATFORM_FAILURES, WALLET_PREFIX)


def features_of(order: Order, snapshot: tuple, *, ip: str | None, country: str | None,
                instrument_attached_at: datetime.datetime | None) -> Features:
    """The order's features from its snapshot (the value of snapshot_expression)."""
    row = dict(zip(SNAPSHOT_NAMES, snapshot, strict=True))
    payment = OnlinePayment(order, ip=ip, country=country, account_created_at=row["registered_at"] or order.created_at,
                            instrument_attached_at=instrument_attached_at)
    return F.features(payment, SnapshotHistory(payment, row))


_STANDALONE = ("SELECT {expression} FROM (VALUES ($1::text, $2::char(3), $3::timestamptz, $4::text, $5::text, $6::text))"
               " o(user_id, currency, created_at, kind, from_acct, to_acct)")


async def online_features(conn: asyncpg.Connection, order: Order, *, ip: str | None, country: str | None,
                          instrument_attached_at: datetime.datetime | None) -> Features:
    """The order's features from what Postgres holds strictly before it was accepted, in a statement
    of its own (the screen step reads the same expression in its locking statement instead)."""
    expression, args = snapshot_expression(8, ip="$7::inet")
    snapshot = await conn.fetchval(_STANDALONE.format(expression=expression), order.user_id, order.currency,
                                   order.created_at, order.kind, order.from_acct, order.to_acct, ip, *args)
    return features_of(order, snapshot, ip=ip, country=country, instrument_attached_at=instrument_attached_at)
