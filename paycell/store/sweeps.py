"""Queries of the re-drive sweeper: live orders whose lease has run out."""
from __future__ import annotations

import asyncpg

_DUE = """
WITH due AS (
    SELECT payment_order_id FROM payment_order
     WHERE payment_order_status NOT IN ('completed', 'failed', 'needs_attention', 'returned')
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
 WHERE o.payment_order_id = due.payment_order_id
RETURNING o.payment_order_id::text, o.payment_order_status, o.deadline_at < now() AS overdue
"""


async def claim_due(conn: asyncpg.Connection, *, limit: int, lease_s: int) -> list[asyncpg.Record]:
    """Take up to `limit` expired leases, extending each so the next sweep skips them."""
    return await conn.fetch(_DUE, limit, lease_s)
