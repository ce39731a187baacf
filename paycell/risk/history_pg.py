"""The model's features online: the History of paycell/risk/features.py answered by Postgres.

`online_features(conn, order, ...)` reads everything the features need about the order's user in
ONE statement (one round trip), into a `SnapshotHistory` that answers the History protocol for
that one payment, and then calls the same `features()` the training calls offline: a feature is
defined once. tests/risk/test_features_online.py checks that both sides agree payment by payment
on a synthetic history loaded into Postgres.

What each answer is read from (the definitions are features.History's):
- the user's windows, the instrument's (the user's payments naming it) and the declines: one
  range scan of the user's last 24 h (index payment_request (user_id, created_at)), with FILTERs;
- transfers received by the user and by a transfer's payee: the partial index of transfers on
  (to_acct, created_at) (migration 0019);
- the usual amount, the countries and IPs seen, whether the instrument was used: the user's last
  RECENT_MAX payments (the same index, backwards, LIMIT); the home country: its first payment.
A payment failed by its provider is a decline; one paycell failed itself (a risk block, no funds,
a deadline) is not: workflow.PLATFORM_FAILURES names those.
"""
from __future__ import annotations

import datetime

import asyncpg

from paycell.risk import features as F
from paycell.risk.features import Features, Window
from paycell.workflow import PLATFORM_FAILURES, Order

_DECLINED = "r.status = 'failed' AND r.failure_code <> ALL($6::text[])"
_INSTRUMENT_MATCH = "(r.kind = 'payin' AND r.from_acct = $4 OR r.kind = 'payout' AND r.to_acct = $4)"

_SNAPSHOT = f"""
WITH day AS (
    SELECT r.kind, r.amount_minor, r.currency, r.created_at, r.status, r.failure_code, r.from_acct, r.to_acct
      FROM payment_request r
     WHERE r.user_id = $1 AND r.created_at >= $3::timestamptz - interval '24 hours' AND r.created_at < $3
), recent AS (
    SELECT r.kind, r.amount_minor, r.currency, r.created_at, r.status, r.from_acct, r.to_acct,
           r.client_ip, r.client_country
      FROM payment_request r
     WHERE r.user_id = $1 AND r.created_at < $3
     ORDER BY r.created_at DESC, r.payment_id DESC LIMIT {F.RECENT_MAX}
)
SELECT
    (SELECT registered_at FROM app_user WHERE user_id = $1) AS registered_at,
    w.*,
    (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY u.amount_minor)
       FROM (SELECT amount_minor FROM recent WHERE currency = $2 AND status = 'succeeded'
              ORDER BY created_at DESC LIMIT {F.USUAL_SAMPLE_MAX}) u) AS usual_minor,
    (SELECT coalesce(bool_or({_INSTRUMENT_MATCH.replace('r.', '')}), false) FROM recent) AS instrument_used,
    (SELECT array_agg(DISTINCT client_country) FILTER (WHERE client_country IS NOT NULL) FROM recent) AS seen,
    (SELECT coalesce(bool_or(client_ip = $5::inet), false) FROM recent) AS ip_seen,
    (SELECT client_country FROM recent ORDER BY created_at DESC LIMIT 1) AS last_country,
    (SELECT r.client_country FROM payment_request r WHERE r.user_id = $1 AND r.created_at < $3
      ORDER BY r.created_at, r.payment_id LIMIT 1) AS home_country,
    (SELECT count(*) FROM payment_request r WHERE r.kind = 'transfer' AND r.to_acct = $7
        AND r.created_at >= $3::timestamptz - interval '24 hours' AND r.created_at < $3) AS user_received,
    (SELECT count(*) FROM payment_request r WHERE r.kind = 'transfer' AND r.to_acct = $8
        AND r.created_at >= $3::timestamptz - interval '24 hours' AND r.created_at < $3) AS counterparty_received
FROM (
    SELECT
        count(*) FILTER (WHERE r.created_at >= $3::timestamptz - interval '10 minutes') AS user_10m,
        coalesce(sum(r.amount_minor) FILTER (WHERE r.created_at >= $3::timestamptz - interval '10 minutes' AND r.currency = $2), 0)
            AS user_10m_minor,
        count(*) FILTER (WHERE r.created_at >= $3::timestamptz - interval '1 hour') AS user_1h,
        coalesce(sum(r.amount_minor) FILTER (WHERE r.created_at >= $3::timestamptz - interval '1 hour' AND r.currency = $2), 0)
            AS user_1h_minor,
        count(*) AS user_24h,
        coalesce(sum(r.amount_minor) FILTER (WHERE r.currency = $2), 0) AS user_24h_minor,
        count(*) FILTER (WHERE {_INSTRUMENT_MATCH} AND r.created_at >= $3::timestamptz - interval '10 minutes') AS instrument_10m,
        coalesce(sum(r.amount_minor) FILTER (WHERE {_INSTRUMENT_MATCH} AND r.currency = $2
                                              AND r.created_at >= $3::timestamptz - interval '10 minutes'), 0) AS instrument_10m_minor,
        count(*) FILTER (WHERE {_INSTRUMENT_MATCH}) AS instrument_24h,
        coalesce(sum(r.amount_minor) FILTER (WHERE {_INSTRUMENT_MATCH} AND r.currency = $2), 0) AS instrument_24h_minor,
        count(*) FILTER (WHERE {_INSTRUMENT_MATCH} AND {_DECLINED} AND r.created_at >= $3::timestamptz - interval '1 hour')
            AS instrument_declines_1h,
        count(*) FILTER (WHERE {_DECLINED} AND r.created_at >= $3::timestamptz - interval '1 hour') AS user_declines_1h
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

    def __init__(self, payment: OnlinePayment, row: asyncpg.Record):
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


async def online_features(conn: asyncpg.Connection, order: Order, *, ip: str | None, country: str | None,
                          instrument_attached_at: datetime.datetime | None) -> Features:
    """The order's features from what Postgres holds strictly before it was accepted."""
    instrument = {"payin": order.from_acct, "payout": order.to_acct}.get(order.kind)
    counterparty_wallet = order.to_acct if order.kind == "transfer" else None
    row = await conn.fetchrow(_SNAPSHOT, order.user_id, order.currency, order.created_at, instrument, ip,
                              _PLATFORM_FAILURES, wallet_of(order.user_id), counterparty_wallet)
    payment = OnlinePayment(order, ip=ip, country=country, account_created_at=row["registered_at"] or order.created_at,
                            instrument_attached_at=instrument_attached_at)
    return F.features(payment, SnapshotHistory(payment, row))
