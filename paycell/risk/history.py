"""The platform's own payments as labelled training data: payment_request + payment_order +
instrument + app_user rows of a time window, read in created_at order into `Payment` structs.

What each field is, online:
    payment_id, user_id, kind, amount_minor, currency, payment_option   the request's
    instrument             the PSP token of a pay-in (from_acct) or pay-out (to_acct); None for a
                           transfer (the features count an instrument's payments per user)
    counterparty_user_id   a transfer's payee (to_acct `wallet:<user>`)
    ip, country            the request's client_ip / client_country (migration 0013); None unknown
    account_created_at     app_user.registered_at (the request's created_at without a user row)
    instrument_attached_at the user's latest attachment of the token at or before the request
                           (instrument.created_at)
    outcome                'declined' when the order failed with a code paycell does not give itself
                           (workflow.PLATFORM_FAILURES), 'succeeded' when it completed, 'other'
                           otherwise: what the online features read from payment_request
                           (paycell/risk/history_pg.py), though they read it at scoring time
    fraud, pattern         fraud when the money came back (payment_order_status 'returned', or
                           needs_attention with `return_shortfall`: a return the wallet could not
                           cover), pattern 'returned'; or when an operator declined it in review
                           (failure_code 'review_declined'), pattern 'review_declined'

At most `payments_max` payments are held (the newest of the window: PAYCELL_RISK_TRAIN_PAYMENTS_MAX),
so a training run's memory depends on configuration, not on how busy the window was.

Returns and disputes arrive weeks after the payment: the window's last days hold frauds that are not
labelled yet. The held-out slice is the newest, so the metrics are, if anything, pessimistic.
"""
from __future__ import annotations

import collections
import datetime
from collections.abc import Callable

import asyncpg
import structlog

from paycell.risk.synthetic import Payment
from paycell.workflow import PLATFORM_FAILURES

log = structlog.get_logger("paycell.risk.history")

REVIEW_DECLINED = "review_declined"
RETURN_SHORTFALL = "return_shortfall"
FETCH_ROWS = 10_000
PROGRESS_EVERY = 100_000

_QUERY = """
SELECT r.payment_id::text AS payment_id, r.user_id, r.kind, r.amount_minor, r.currency::text AS currency,
       r.payment_option, r.from_acct, r.to_acct, host(r.client_ip) AS ip, r.client_country::text AS country,
       r.created_at, u.registered_at, o.payment_order_status AS order_status, o.failure_code, o.psp,
       i.created_at AS attached_at
  FROM payment_request r
  LEFT JOIN app_user u ON u.user_id = r.user_id
  LEFT JOIN LATERAL (SELECT po.payment_order_status, po.failure_code, po.psp FROM payment_order po
                      WHERE po.user_id = r.user_id AND po.payment_id = r.payment_id
                      ORDER BY po.created_at DESC LIMIT 1) o ON true
  LEFT JOIN LATERAL (SELECT ins.created_at FROM instrument ins
                      WHERE r.kind <> 'transfer' AND ins.user_id = r.user_id
                        AND ins.provider_token = CASE r.kind WHEN 'payin' THEN r.from_acct ELSE r.to_acct END
                        AND ins.created_at <= r.created_at
                      ORDER BY ins.created_at DESC LIMIT 1) i ON true
 WHERE r.created_at >= $1 AND r.created_at < $2
 ORDER BY r.created_at, r.user_id, r.payment_id
"""


def payment_of(row) -> Payment:
    """One row of _QUERY as a labelled Payment."""
    kind = row["kind"]
    instrument = None if kind == "transfer" else (row["from_acct"] if kind == "payin" else row["to_acct"])
    counterparty = row["to_acct"].removeprefix("wallet:") if kind == "transfer" else None
    status, code = row["order_status"], row["failure_code"]
    outcome = ("declined" if status == "failed" and code not in PLATFORM_FAILURES
               else "succeeded" if status == "completed" else "other")
    returned = status == "returned" or (status == "needs_attention" and code == RETURN_SHORTFALL)
    pattern = "returned" if returned else (REVIEW_DECLINED if code == REVIEW_DECLINED else None)
    return Payment(
        payment_id=row["payment_id"], user_id=row["user_id"], kind=kind, amount_minor=row["amount_minor"],
        currency=row["currency"], payment_option=row["payment_option"], instrument=instrument,
        counterparty_user_id=counterparty, ip=row["ip"], country=row["country"],
        created_at=row["created_at"], outcome=outcome,
        account_created_at=row["registered_at"] or row["created_at"],
        instrument_attached_at=row["attached_at"], fraud=pattern is not None, pattern=pattern)


async def load_payments(conn: asyncpg.Connection, since: datetime.datetime, until: datetime.datetime, *,
                        statement_timeout_ms: int,
                        progress: Callable[[int], None] | None = None,
                        payments_max: int | None = None) -> list[Payment]:
    """The payments created in [since, until), oldest first, labelled; only the newest
    `payments_max` of them when there are more."""
    found: collections.deque[Payment] = collections.deque(maxlen=payments_max)
    read = 0
    async with conn.transaction(readonly=True):
        # One sort over the window may outlast a request's timeout; only this transaction's is raised.
        await conn.execute(f"SET LOCAL statement_timeout = {int(statement_timeout_ms)}")
        cursor = await conn.cursor(_QUERY, since, until)
        while True:
            rows = await cursor.fetch(FETCH_ROWS)
            if not rows:
                break
            for row in rows:
                found.append(payment_of(row))
            read += len(rows)
            if progress is not None and read % PROGRESS_EVERY < len(rows):
                progress(read)
    return list(found)
