"""Queries of the operator console's sessions (console_session, migration 0024): only a hash of
each session's secret is stored (paycell/console/session.py)."""
from __future__ import annotations

import datetime

import asyncpg


async def insert(conn: asyncpg.Connection, user_id: str, session_hash: bytes, *,
                 expires_at: datetime.datetime) -> None:
    """A new session of operator `user_id`; that operator's sessions already over are deleted in
    the same transaction (an operator's rows stay few without a sweeper)."""
    async with conn.transaction():
        await conn.execute("""DELETE FROM console_session
                               WHERE user_id = $1 AND (expires_at < now() OR ended_at IS NOT NULL)""", user_id)
        await conn.execute("INSERT INTO console_session (user_id, session_hash, expires_at) VALUES ($1, $2, $3)",
                           user_id, session_hash, expires_at)


async def live(conn, user_id: str, session_hash: bytes) -> datetime.datetime | None:
    """The session's expiry while it is live (not ended, not expired); None otherwise."""
    return await conn.fetchval("""SELECT expires_at FROM console_session
                                   WHERE user_id = $1 AND session_hash = $2 AND ended_at IS NULL
                                     AND expires_at > now()""", user_id, session_hash)


async def end(conn, user_id: str, session_hash: bytes) -> bool:
    """Sign-out: the session ends now; False when it was not live."""
    status = await conn.execute("""UPDATE console_session SET ended_at = now()
                                    WHERE user_id = $1 AND session_hash = $2 AND ended_at IS NULL""",
                                user_id, session_hash)
    return status.endswith(" 1")
