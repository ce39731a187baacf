"""The double-entry ledger: post a payment order's step atomically and idempotently.

Invariants, enforced by Postgres (migrations 0001-0008, 0027): entries of a transaction sum to zero
per currency; entries are never updated or deleted; an account's balance moves only through its
entries; user funds never go below zero; an entry's currency is its account's currency; and a
posting exists only because a payment order in the right state justifies it: the application
role cannot insert ledger rows, it calls post_order(), which derives the legs from the order.

Every ledger row carries a user (migration 0027, docs/scale.md): a transaction its order's user,
an entry its account's, an account its owner or, for a slice of a system account, the slice's
owner key `system:<slice>`. A posting for a user uses the system slice hashtext(user) mod slices.
"""
from __future__ import annotations

import asyncpg
import msgspec

from paycell.errors import InsufficientFunds, LedgerError


class Entry(msgspec.Struct, frozen=True):
    entry_id: int
    account_id: int
    currency: str
    amount_minor: int
    balance_after_minor: int


class Posting(msgspec.Struct, frozen=True):
    transaction_id: int
    entries: tuple[Entry, ...]
    replayed: bool  # True when the key had been posted before: nothing new was written


# One statement, one round trip: the function locks the order, checks that its kind and state
# justify the step, derives the legs and posts them (migration 0008).
_POST_ORDER = """
SELECT transaction_id, entry_id, account_id, currency, amount_minor, balance_after_minor, replayed
  FROM post_order($1::text, $2::uuid, $3, $4)
"""
STEPS = ("transfer", "reserve", "settle", "release", "return")


async def post_order(conn: asyncpg.Connection, user_id: str, order_id: str, step: str, *,
                     system_slices: int) -> Posting:
    """Post `step` of payment order `order_id` of user `user_id`; the database derives amount,
    currency and accounts from the order and refuses a step its kind and state do not justify
    (LedgerError), or an order that is not this user's.

    Keyed `<order_id>:<step>`: posting a step again writes nothing and returns the first posting
    (`replayed=True`). Overdrawing user funds raises InsufficientFunds and leaves the caller's
    transaction aborted (use a savepoint to go on). Works in autocommit too (one statement).
    """
    if step not in STEPS:
        raise LedgerError(f"not a posting step: {step!r}")
    try:
        rows = await conn.fetch(_POST_ORDER, user_id, order_id, step, system_slices)
    except asyncpg.CheckViolationError as exc:
        if exc.constraint_name == "account_user_funds_never_negative":
            raise InsufficientFunds("insufficient funds for this payment") from None
        raise LedgerError(str(exc)) from exc
    except asyncpg.PostgresError as exc:
        if isinstance(exc, (asyncpg.DeadlockDetectedError, asyncpg.SerializationError,
                            asyncpg.QueryCanceledError, asyncpg.LockNotAvailableError)):
            raise  # transient: the caller's retry policy handles these
        raise LedgerError(str(exc)) from exc
    if not rows:
        raise LedgerError(f"posting {order_id}:{step} returned no entries")
    return Posting(rows[0]["transaction_id"], tuple(_entry(r) for r in rows), replayed=rows[0]["replayed"])


def _entry(r: asyncpg.Record) -> Entry:
    return Entry(r["entry_id"], r["account_id"], r["currency"].strip(), r["amount_minor"], r["balance_after_minor"])
