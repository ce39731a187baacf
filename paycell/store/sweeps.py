"""Queries of the re-drive sweeper: live orders whose lease has run out."""
from __future__ import annotations

import asyncpg

_DUE = """
WITH due AS (
    SELECT user_id, payment_order_id FROM payment_order
     WHERE payment_order_status NOT IN ('completed', 'failed', 'needs_attention', 'returned', 'reversing', 'reversed')
       AND lease_until < now()
     ORDER BY lease_until
     LIMIT $1
     FOR UPDATE SKIP LOCKED
)
UPDATE payment_order o
   SET lease_until = now() + make_interval(secs => $2),
       -- a re-driven PSP call may have reached the PSP: the next attempt asks before it submits
       attempt = o.attempt + CASE WHEN o.payment_order_status IN ('psp_submitting', 'psp_pending') THEN 1 ELSE 0 END,
       -- ... and the order leaves that connector no sooner than PAYCELL_PSP_FAILOVER_QUIET_S after now
       psp_unknown_at = CASE WHEN o.payment_order_status IN ('psp_submitting', 'psp_pending') THEN now()
                             ELSE o.psp_unknown_at END
  FROM due
 WHERE o.user_id = due.user_id AND o.payment_order_id = due.payment_order_id
RETURNING o.user_id, o.payment_order_id::text, o.payment_order_status, o.deadline_at < now() AS overdue
"""


async def claim_due(conn: asyncpg.Connection, *, limit: int, lease_s: int) -> list[asyncpg.Record]:
    """Take up to `limit` expired leases, extending each so the next sweep skips them."""
    return await conn.fetch(_DUE, limit, lease_s)


_DUE_REVERSALS = """
WITH due AS (
    SELECT user_id, reversal_id FROM payment_reversal
     WHERE state IN ('requested', 'psp_submitting') AND lease_until < now()
     ORDER BY lease_until
     LIMIT $1
     FOR UPDATE SKIP LOCKED
)
UPDATE payment_reversal r SET lease_until = now() + make_interval(secs => $2)
  FROM due
 WHERE r.user_id = due.user_id AND r.reversal_id = due.reversal_id
RETURNING r.user_id, r.reversal_id::text
"""


async def claim_due_reversals(conn: asyncpg.Connection, *, limit: int, lease_s: int) -> list[asyncpg.Record]:
    """Live reversals whose lease ran out (a lost message, a crash between the PSP and the
    posting), up to `limit`, their leases extended so the next sweep skips them."""
    return await conn.fetch(_DUE_REVERSALS, limit, lease_s)
