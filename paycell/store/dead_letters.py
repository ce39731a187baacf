"""Dead letters, kept in Postgres so that nothing depends on Redis keeping them."""
from __future__ import annotations

import asyncpg


async def record(conn: asyncpg.Connection, *, message_id: str, queue_name: str, actor_name: str,
                 payment_order_id: str | None, message: dict, error: str) -> None:
    await conn.execute(
        """INSERT INTO dead_letter (message_id, queue_name, actor_name, payment_order_id, message, error)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (message_id) DO NOTHING""",
        message_id, queue_name, actor_name, payment_order_id, message, error)


async def pending(conn, *, limit: int = 100) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT dead_letter_id, message_id, queue_name, actor_name, payment_order_id::text, message, error,
                  failed_at, now() - failed_at AS age
             FROM dead_letter WHERE replayed_at IS NULL ORDER BY dead_letter_id LIMIT $1""", limit)


async def mark_replayed(conn, dead_letter_id: int) -> bool:
    return await conn.fetchval(
        "UPDATE dead_letter SET replayed_at = now() WHERE dead_letter_id = $1 AND replayed_at IS NULL RETURNING true",
        dead_letter_id) or False
