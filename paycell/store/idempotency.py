"""API idempotency keys, scoped to the user: claim, replay, complete."""
from __future__ import annotations

import asyncpg
import msgspec


class StoredResponse(msgspec.Struct, frozen=True):
    request_sha256: bytes
    status: int
    body: bytes
    locked: bool  # the first request is still being handled


async def claim(conn: asyncpg.Connection, *, user_id: str, key: str, request_sha256: bytes, status: int,
                body: bytes, lock_s: float) -> StoredResponse | None:
    """Claim `key` with the response to replay; None when claimed now, else what was stored first.

    A concurrent claim of the same key waits for the first transaction and then sees its row.
    `lock_s` > 0 marks the key as still being handled for that long (a client waiting on it).
    """
    claimed = await conn.fetchval(
        """INSERT INTO idempotency_key (user_id, key, request_sha256, response_status, response_body, locked_until)
           VALUES ($1, $2, $3, $4, $5, CASE WHEN $6 > 0 THEN now() + make_interval(secs => $6) END)
           ON CONFLICT (user_id, key) DO NOTHING RETURNING true""",
        user_id, key, request_sha256, status, body, float(lock_s))
    if claimed:
        return None
    row = await conn.fetchrow(
        """SELECT request_sha256, response_status, response_body,
                  coalesce(locked_until > now(), false) AS locked
             FROM idempotency_key WHERE user_id = $1 AND key = $2""", user_id, key)
    return StoredResponse(bytes(row["request_sha256"]), row["response_status"], bytes(row["response_body"]),
                          row["locked"])


async def complete(conn, *, user_id: str, key: str, status: int, body: bytes) -> None:
    """Store the final response of a request that held the key while it waited."""
    await conn.execute(
        """UPDATE idempotency_key SET response_status = $3, response_body = $4, locked_until = NULL
            WHERE user_id = $1 AND key = $2""", user_id, key, status, body)
