"""The double-entry ledger: post a transaction of N entries atomically and idempotently.

Invariants, stated here and enforced again by Postgres (migrations/0001_ledger.sql):
entries of a transaction sum to zero per currency; entries are never updated or deleted; an
account's balance moves only through its entries; user funds never go below zero; an entry's
currency is its account's currency.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import asyncpg
import msgspec

from paycell.errors import InsufficientFunds, LedgerError, LedgerKeyReused


class Leg(msgspec.Struct, frozen=True):
    """One side of a posting: a signed amount (positive raises the balance) on an account."""
    account_id: int
    amount_minor: int
    currency: str


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


_POST = """
WITH txn AS (
    INSERT INTO ledger_transaction (idempotency_key, kind, payment_order_id, description)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING transaction_id
)
INSERT INTO ledger_entry (transaction_id, account_id, currency, amount_minor)
SELECT txn.transaction_id, leg.account_id, leg.currency, leg.amount_minor
  FROM txn, unnest($5::bigint[], $6::text[], $7::bigint[]) WITH ORDINALITY AS leg(account_id, currency, amount_minor, n)
 ORDER BY leg.n
RETURNING transaction_id, entry_id, account_id, currency, amount_minor, balance_after_minor
"""

_EXISTING = """
SELECT e.transaction_id, e.entry_id, e.account_id, e.currency, e.amount_minor, e.balance_after_minor, t.kind
  FROM ledger_transaction t JOIN ledger_entry e USING (transaction_id)
 WHERE t.idempotency_key = $1
 ORDER BY e.entry_id
"""


def validate(legs: Sequence[Leg]) -> list[Leg]:
    """The legs in account-id order (the lock order), after checking they balance."""
    if len(legs) < 2:
        raise LedgerError("a ledger transaction needs at least two entries")
    totals: dict[str, int] = defaultdict(int)
    for leg in legs:
        if type(leg.amount_minor) is not int or leg.amount_minor == 0 or abs(leg.amount_minor) >= 2**63:
            raise LedgerError(f"entry amount must be a non-zero 64-bit int, got {leg.amount_minor!r}")
        totals[leg.currency] += leg.amount_minor
    unbalanced = {c: t for c, t in totals.items() if t != 0}
    if unbalanced:
        raise LedgerError(f"entries do not sum to zero per currency: {unbalanced}")
    return sorted(legs, key=lambda leg: (leg.account_id, leg.amount_minor))


async def post(conn: asyncpg.Connection, *, key: str, kind: str, legs: Sequence[Leg],
               payment_order_id: str | None = None, description: str = "") -> Posting:
    """Post `legs` as one transaction under `key`, inside the caller's database transaction.

    Posting a key again writes nothing and returns the first posting (`replayed=True`); the
    same key with other entries raises LedgerKeyReused. Overdrawing user funds raises
    InsufficientFunds and leaves the caller's transaction aborted (use a savepoint to go on).
    """
    if not conn.is_in_transaction():
        raise LedgerError("ledger.post must run inside a database transaction")
    ordered = validate(legs)
    try:
        rows = await conn.fetch(
            _POST, key, kind, payment_order_id, description,
            [leg.account_id for leg in ordered], [leg.currency for leg in ordered],
            [leg.amount_minor for leg in ordered])
    except asyncpg.CheckViolationError as exc:
        if exc.constraint_name == "account_user_funds_never_negative":
            raise InsufficientFunds("insufficient funds for this payment") from None
        raise LedgerError(str(exc)) from exc
    except asyncpg.ForeignKeyViolationError as exc:
        raise LedgerError(f"an entry names an unknown account or the wrong currency: {exc}") from exc
    if rows:
        return Posting(rows[0]["transaction_id"], tuple(_entry(r) for r in rows), replayed=False)
    return await _replay(conn, key, kind, ordered)


async def _replay(conn: asyncpg.Connection, key: str, kind: str, ordered: list[Leg]) -> Posting:
    rows = await conn.fetch(_EXISTING, key)
    if not rows:
        raise LedgerError(f"ledger key {key!r} conflicted but has no entries")
    stored = sorted((r["account_id"], r["amount_minor"], r["currency"].strip()) for r in rows)
    asked = sorted((leg.account_id, leg.amount_minor, leg.currency) for leg in ordered)
    if stored != asked or rows[0]["kind"] != kind:
        raise LedgerKeyReused(f"ledger key {key!r} was posted before with other entries")
    return Posting(rows[0]["transaction_id"], tuple(_entry(r) for r in rows), replayed=True)


def _entry(r: asyncpg.Record) -> Entry:
    return Entry(r["entry_id"], r["account_id"], r["currency"].strip(), r["amount_minor"], r["balance_after_minor"])
