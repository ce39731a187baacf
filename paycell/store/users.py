"""Registered users: who may receive a transfer. A user is registered on their first
authenticated API call (paycell.http.users keeps the web process from writing again)."""
from __future__ import annotations

import asyncpg


async def register(conn: asyncpg.Connection | asyncpg.Pool, user_id: str) -> None:
    """Record `user_id` with an open wallet; a user registered before is left as they are
    (a closed wallet stays closed)."""
    await conn.execute("INSERT INTO app_user (user_id) VALUES ($1) ON CONFLICT (user_id) DO NOTHING", user_id)


async def wallet_open(conn: asyncpg.Connection | asyncpg.Pool, user_id: str) -> bool:
    """True when `user_id` is registered and their wallet is open."""
    return bool(await conn.fetchval(
        "SELECT true FROM app_user WHERE user_id = $1 AND wallet_status = 'open'", user_id))
