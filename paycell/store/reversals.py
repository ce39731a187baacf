"""Queries of payment reversals (migration 0024): a refund of a pay-in, the recall of a pay-out."""
from __future__ import annotations

import datetime
import uuid

import asyncpg
import msgspec

from paycell import workflow
from paycell.errors import LedgerError

_COLUMNS = ("user_id, reversal_id::text, payment_id::text, payment_order_id::text, origin, requested_by, request_key, "
            "request_sha256, amount_minor, currency, reason, state, psp, psp_reference, attempt, failure_code, "
            "last_error, transaction_id, created_at, updated_at")
_SETTABLE = frozenset({"psp_reference", "attempt", "lease_until", "failure_code", "last_error"})


class Reversal(msgspec.Struct, kw_only=True):
    user_id: str
    reversal_id: str
    payment_id: str
    payment_order_id: str
    origin: str  # operator or policy
    requested_by: str
    request_key: str | None
    request_sha256: bytes | None
    amount_minor: int
    currency: str
    reason: str
    state: str
    psp: str
    psp_reference: str | None
    attempt: int
    failure_code: str | None
    last_error: str | None
    transaction_id: int | None
    created_at: datetime.datetime
    updated_at: datetime.datetime


def _reversal(row) -> Reversal:
    return Reversal(**{k: (v.strip() if k == "currency" else v) for k, v in row.items()})


async def insert(conn: asyncpg.Connection, *, user_id: str, reversal_id: str, payment_id: str, order_id: str,
                 origin: str, requested_by: str, amount_minor: int, currency: str, reason: str, psp: str,
                 lease_until: datetime.datetime, request_key: str | None = None,
                 request_sha256: bytes | None = None) -> Reversal:
    """Record a reversal `requested`, and `reversal.requested` in the payment's log, in one
    statement. The database refuses one that exceeds what remains of the order (under its lock)."""
    row = await conn.fetchrow(
        f"""WITH r AS (
                INSERT INTO payment_reversal (user_id, reversal_id, payment_id, payment_order_id, origin, requested_by,
                                              request_key, request_sha256, amount_minor, currency, reason, psp,
                                              lease_until)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                RETURNING {_COLUMNS}
            ), logged AS (
                INSERT INTO event (user_id, payment_id, payment_order_id, type, data)
                SELECT r.user_id, r.payment_id::uuid, r.payment_order_id::uuid, 'reversal.requested',
                       jsonb_build_object('reversal_id', r.reversal_id, 'amount_minor', r.amount_minor,
                                          'currency', r.currency, 'origin', r.origin, 'reason', r.reason,
                                          'requested_by', r.requested_by)
                  FROM r
            )
            SELECT * FROM r""",
        user_id, uuid.UUID(reversal_id), uuid.UUID(payment_id), uuid.UUID(order_id), origin, requested_by, request_key,
        request_sha256, amount_minor, currency, reason, psp, lease_until)
    return _reversal(row)


async def by_request_key(conn, user_id: str, payment_id: str, request_key: str) -> Reversal | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM payment_reversal WHERE user_id = $1 AND payment_id = $2 "
                              "AND request_key = $3", user_id, uuid.UUID(payment_id), request_key)
    return _reversal(row) if row else None


async def lock(conn, user_id: str, reversal_id: str) -> Reversal | None:
    """The reversal locked FOR UPDATE (its order's lock is taken first by the caller)."""
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM payment_reversal WHERE user_id = $1 AND reversal_id = $2 "
                              "FOR UPDATE", user_id, uuid.UUID(reversal_id))
    return _reversal(row) if row else None


async def get(conn, user_id: str, reversal_id: str) -> Reversal | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM payment_reversal WHERE user_id = $1 AND reversal_id = $2",
                              user_id, uuid.UUID(reversal_id))
    return _reversal(row) if row else None


async def order_of(conn, user_id: str, reversal_id: str) -> str | None:
    """The order a reversal belongs to, unlocked (to take the order's lock first)."""
    return await conn.fetchval("SELECT payment_order_id::text FROM payment_reversal WHERE user_id = $1 "
                               "AND reversal_id = $2", user_id, uuid.UUID(reversal_id))


async def for_payment(conn, user_id: str, payment_id: str) -> list[Reversal]:
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM payment_reversal WHERE user_id = $1 AND payment_id = $2 "
                            "ORDER BY created_at, reversal_id", user_id, uuid.UUID(payment_id))
    return [_reversal(r) for r in rows]


async def taken_minor(conn, user_id: str, order_id: str) -> tuple[int, int]:
    """(reversed: succeeded, held: reversals under way or waiting for a human) of an order, in its
    minor units (ints: a bigint's sum is numeric in Postgres)."""
    row = await conn.fetchrow(
        """SELECT coalesce(sum(amount_minor) FILTER (WHERE state = 'succeeded'), 0)::bigint AS done,
                  coalesce(sum(amount_minor) FILTER (WHERE state NOT IN ('succeeded', 'failed')), 0)::bigint AS held
             FROM payment_reversal WHERE user_id = $1 AND payment_order_id = $2""", user_id, uuid.UUID(order_id))
    return row["done"], row["held"]


_MOVE = """
WITH moved AS (
    UPDATE payment_reversal SET state = $3, updated_at = now(){sets}
     WHERE user_id = $1 AND reversal_id = $2
    RETURNING user_id, payment_id, payment_order_id
)
INSERT INTO event (user_id, payment_id, payment_order_id, type, data)
SELECT moved.user_id, moved.payment_id, moved.payment_order_id, $4, $5::jsonb FROM moved
"""


async def move(conn: asyncpg.Connection, reversal: Reversal, to: str, *, event: str, data: dict | None = None,
               **fields) -> None:
    """Advance a locked reversal to `to` (checked against workflow.REVERSAL_STATES) and set
    `fields`, logging `event` in the payment's history, in one statement."""
    workflow.check_reversal_transition(reversal.state, to)
    unknown = set(fields) - _SETTABLE
    if unknown:
        raise ValueError(f"not settable on a reversal: {sorted(unknown)}")
    names = list(fields)
    sets = "".join(f", {name} = ${i + 6}" for i, name in enumerate(names))
    logged = {"reversal_id": reversal.reversal_id, "from": reversal.state, "to": to, **(data or {})}
    await conn.execute(_MOVE.format(sets=sets), reversal.user_id, uuid.UUID(reversal.reversal_id), to, event, logged,
                       *(fields[n] for n in names))
    reversal.state = to
    for name, value in fields.items():
        if hasattr(reversal, name):
            setattr(reversal, name, value)


async def post(conn: asyncpg.Connection, reversal: Reversal, *, system_slices: int) -> int | None:
    """The compensating transaction of a reversal the PSP carried out (post_reversal, migration
    0024), derived from the reversal and its order by the database; None when nothing of the
    payment was posted (nothing to compensate). Posting it again returns the first one."""
    try:
        row = await conn.fetchrow("SELECT transaction_id FROM post_reversal($1, $2, $3)", reversal.user_id,
                                  uuid.UUID(reversal.reversal_id), system_slices)
    except asyncpg.CheckViolationError as exc:
        raise LedgerError(str(exc)) from exc
    return row["transaction_id"] if row else None


async def set_payment_reversed(conn: asyncpg.Connection, user_id: str, payment_id: str, reversed_minor: int,
                               status: str) -> None:
    """What succeeded reversals took back of a payment, and the status its user sees."""
    await conn.execute("UPDATE payment_request SET reversed_minor = $3, status = $4, updated_at = now() "
                       "WHERE user_id = $1 AND payment_id = $2", user_id, uuid.UUID(payment_id), reversed_minor,
                       status)


async def payment_exists(conn, user_id: str, payment_id: str) -> bool:
    return await conn.fetchval("SELECT true FROM payment_request WHERE user_id = $1 AND payment_id = $2",
                               user_id, uuid.UUID(payment_id)) is not None
