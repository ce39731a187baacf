"""What the risk step's daily limit reads: a user's accepted payments in a window, per currency."""
from __future__ import annotations

import asyncpg


async def accepted_minor(conn: asyncpg.Connection, user_id: str, currency: str, *, window_s: int) -> int:
    """The sum of the user's payments in `currency` accepted in the last `window_s` that have not
    failed (in flight, succeeded or needing attention all count), in minor units. One range scan of
    the index payment_request (user_id, created_at DESC, payment_id DESC)."""
    return await conn.fetchval(
        """SELECT coalesce(sum(amount_minor), 0)::bigint FROM payment_request
            WHERE user_id = $1 AND created_at > now() - make_interval(secs => $3)
              AND currency = $2 AND status <> 'failed'""", user_id, currency, float(window_s))
