"""The append-only event log.

Keyed (event_id, user_id) (migration 0027: distributed by user, docs/scale.md); read by payment,
with its user, through the index event_payment (payment_id, event_id), never by the id alone."""
from __future__ import annotations

import asyncpg


async def append(conn: asyncpg.Connection, *, user_id: str, type: str, payment_id=None,
                 payment_order_id=None, data: dict | None = None) -> None:
    await conn.execute(
        "INSERT INTO event (user_id, payment_id, payment_order_id, type, data) VALUES ($1, $2, $3, $4, $5)",
        user_id, payment_id, payment_order_id, type, data or {})


async def for_payment(conn, user_id: str, payment_id) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT event_id, occurred_at, payment_order_id, type, data FROM event
            WHERE payment_id = $1 AND user_id = $2 ORDER BY event_id""", payment_id, user_id)
