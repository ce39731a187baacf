"""Instruments: the PSP tokens a user attached, on the connector that will carry them.

Pay-ins and pay-outs may only name an attached instrument of the caller (checked in the statement
that accepts the payment, payments.accept). Detaching keeps the row: past payments still name it.
"""
from __future__ import annotations

import datetime
import uuid

import asyncpg

_COLUMNS = ("instrument_id::text, user_id, connector, payment_option, provider_token, created_at, "
            "detached_at")

_ATTACH = f"""
WITH created AS (
    INSERT INTO instrument (user_id, instrument_id, connector, payment_option, provider_token)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (user_id, connector, provider_token) WHERE detached_at IS NULL DO NOTHING
    RETURNING {_COLUMNS}, true AS created
)
SELECT * FROM created
UNION ALL
SELECT {_COLUMNS}, false FROM instrument
 WHERE user_id = $1 AND connector = $3 AND provider_token = $5 AND detached_at IS NULL
   AND NOT EXISTS (SELECT FROM created)
"""
_ATTACH_TRIES = 3  # a concurrent attach of the same token commits between our insert and our read


async def attach(conn: asyncpg.Connection, user_id: str, *, connector: str, payment_option: str,
                 provider_token: str) -> tuple[asyncpg.Record, bool]:
    """(the instrument, whether it was created now). Attaching a token the user already has
    attached on that connector returns that instrument: attach is idempotent."""
    for _ in range(_ATTACH_TRIES):
        row = await conn.fetchrow(_ATTACH, user_id, uuid.uuid4(), connector, payment_option, provider_token)
        if row is not None:  # None only when a concurrent attach won the insert after our snapshot
            return row, row["created"]
    raise RuntimeError("instrument attach lost the race too often")


async def get(conn: asyncpg.Connection, user_id: str, instrument_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM instrument WHERE user_id = $1 AND instrument_id = $2", user_id, instrument_id)


async def detach(conn: asyncpg.Connection, user_id: str, instrument_id: str) -> asyncpg.Record | None:
    """The instrument, detached now or before; None when the user has no such instrument."""
    row = await conn.fetchrow(
        f"""UPDATE instrument SET detached_at = now()
             WHERE user_id = $1 AND instrument_id = $2 AND detached_at IS NULL RETURNING {_COLUMNS}""",
        user_id, instrument_id)
    return row if row is not None else await get(conn, user_id, instrument_id)


async def list_attached(conn: asyncpg.Connection, user_id: str, *, limit: int,
                        before: tuple[datetime.datetime, str] | None) -> list[asyncpg.Record]:
    """The user's attached instruments, newest first, keyset-paginated on (created_at, instrument_id)."""
    if before is None:
        return await conn.fetch(
            f"""SELECT {_COLUMNS} FROM instrument WHERE user_id = $1 AND detached_at IS NULL
                ORDER BY created_at DESC, instrument_id DESC LIMIT $2""", user_id, limit)
    return await conn.fetch(
        f"""SELECT {_COLUMNS} FROM instrument WHERE user_id = $1 AND detached_at IS NULL
               AND (created_at, instrument_id) < ($3, $4::uuid)
            ORDER BY created_at DESC, instrument_id DESC LIMIT $2""", user_id, limit, before[0], before[1])
