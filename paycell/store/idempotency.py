"""API idempotency keys, scoped to the user: what was stored, and completing a held key.
The key is claimed in the same statement that records the payment (payments.accept)."""
from __future__ import annotations

import asyncpg
import msgspec


class StoredResponse(msgspec.Struct, frozen=True):
    request_sha256: bytes
    status: int
    body: bytes
    locked: bool  # the first request is still being handled


async def stored(conn: asyncpg.Connection, *, user_id: str, key: str) -> StoredResponse | None:
    """What the first request under `key` stored (the key is claimed in payments.accept); None
    when no request claimed it."""
    row = await conn.fetchrow(
        """SELECT request_sha256, response_status, response_body,
                  coalesce(locked_until > now(), false) AS locked
             FROM idempotency_key WHERE user_id = $1 AND key = $2""", user_id, key)
    if row is None:
        return None
    return StoredResponse(bytes(row["request_sha256"]), row["response_status"], bytes(row["response_body"]),
                          row["locked"])


async def complete(conn, *, user_id: str, key: str, status: int, body: bytes) -> None:
    """Store the final response of a request that held the key while it waited."""
    await conn.execute(
        """UPDATE idempotency_key SET response_status = $3, response_body = $4, locked_until = NULL
            WHERE user_id = $1 AND key = $2""", user_id, key, status, body)


async def claim_completed(conn, *, user_id: str, key: str, request_sha256: bytes, status: int,
                          body: bytes) -> bool:
    """Claim `key` with its final answer, in the caller's transaction (a request answered in one
    transaction needs no lock); False when another request holds it (the caller rolls back and
    replays that one's answer)."""
    return bool(await conn.fetchval(
        """INSERT INTO idempotency_key (user_id, key, request_sha256, response_status, response_body)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, key) DO NOTHING RETURNING true""",
        user_id, key, request_sha256, status, body))


_EXPIRE = """
WITH expired AS (
    SELECT user_id, key FROM idempotency_key
     WHERE created_at < $1 AND (locked_until IS NULL OR locked_until < now())
     ORDER BY created_at
     LIMIT $2
     FOR UPDATE SKIP LOCKED
)
DELETE FROM idempotency_key k USING expired WHERE k.user_id = expired.user_id AND k.key = expired.key
"""


async def expire(conn, *, created_before, limit: int) -> int:
    """Delete up to `limit` keys first used before `created_before`, oldest first; returns how many.
    SKIP LOCKED: two runs at once share the work instead of waiting on each other."""
    status = await conn.execute(_EXPIRE, created_before, limit)
    return int(status.rsplit(" ", 1)[1])
