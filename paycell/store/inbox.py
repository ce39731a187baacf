"""The webhook inbox (psp_event, migration 0012): each provider event stored once, applied once.

An event is stored before its delivery is answered, keyed (connector, event_id); the apply actor
locks it, applies it and marks it applied in one transaction. One it cannot apply yet (no order
carries its reference) stays unapplied with the reason, and the sweeper sends it again until its
attempts run out: then it waits for an operator (`paycell webhooks unapplied`).
"""
from __future__ import annotations

import datetime
import uuid

import asyncpg
import msgspec

from paycell.psp.base import WebhookEvent

# Unapplied results: the event waits (the sweeper retries it), and says why.
UNAPPLIED = frozenset({"unmatched", "mismatch"})
APPLIED = frozenset({"applied", "agrees", "stale", "contradiction", "held", "ignored"})


class StoredEvent(msgspec.Struct, frozen=True, kw_only=True):
    connector: str
    event_id: str
    event: WebhookEvent
    received_at: datetime.datetime
    applied_at: datetime.datetime | None
    apply_attempts: int
    owner_id: str | None = None  # the user of the order the event names by its id, found when it was stored


_STORE = """
WITH given AS (
    SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::uuid[], $6::text[], $7::text[])
                  AS g(event_id, kind, type, payment_order_id, psp_reference, event)
), judged AS (
    -- An outcome its order already records (most arrive after the step's own answer): a no-op,
    -- decided here without the order's lock (it can only have moved on since, and the same
    -- outcome stays a no-op in every later state), stored applied as `agrees`, sent to nobody.
    -- The same probe finds the order's owner, kept with the event (owner_id): the apply actor locks
    -- the order by its key (user_id, payment_order_id) without a lookup of its own.
    SELECT g.*, o.user_id AS owner_id,
           CASE WHEN g.kind = 'outcome' AND o.psp = $1
                 AND (o.payment_order_status, g.event::jsonb #>> '{result,status}') IN (
                         ('completed', 'succeeded'), ('psp_succeeded', 'succeeded'), ('failed', 'declined'),
                         ('psp_pending', 'pending'))
                 AND (g.event::jsonb ->> 'amount_minor' IS NULL
                      OR ((g.event::jsonb ->> 'amount_minor')::bigint = o.amount_minor
                          AND g.event::jsonb ->> 'currency' = o.currency::text))
                THEN o.payment_order_id END AS agrees_with
      FROM given g
      LEFT JOIN payment_order o ON o.payment_order_id = g.payment_order_id
), inserted AS (
    INSERT INTO psp_event (connector, event_id, kind, type, payment_order_id, psp_reference, event, raw_body,
                           retry_at, applied_at, result, applied_order_id, apply_attempts, owner_id)
    SELECT $1, j.event_id, j.kind, j.type, j.payment_order_id, j.psp_reference, j.event::jsonb, $8,
           now() + make_interval(secs => $9),
           CASE WHEN j.agrees_with IS NOT NULL THEN now() END,
           CASE WHEN j.agrees_with IS NOT NULL THEN 'agrees' END,
           j.agrees_with, CASE WHEN j.agrees_with IS NOT NULL THEN 1 ELSE 0 END, j.owner_id
      FROM judged j
    ON CONFLICT (connector, event_id) DO NOTHING
    RETURNING event_id, applied_at IS NOT NULL AS agrees
)
SELECT DISTINCT i.event_id, CASE WHEN i.agrees THEN 'agrees' ELSE 'new' END AS what FROM inserted i
UNION
SELECT DISTINCT g.event_id, 'resent' FROM given g
 WHERE g.event_id NOT IN (SELECT event_id FROM inserted)
   AND EXISTS (SELECT 1 FROM psp_event p WHERE p.connector = $1 AND p.event_id = g.event_id AND p.applied_at IS NULL)
"""


def order_uuid(order_id: str | None) -> uuid.UUID | None:
    """The order id an event echoes, when it is one paycell could have issued."""
    if not order_id:
        return None
    try:
        return uuid.UUID(order_id)
    except ValueError:
        return None


async def store(conn: asyncpg.Connection, connector: str, events: list[WebhookEvent], raw_body: bytes, *,
                retry_s: float) -> list[tuple[str, str]]:
    """Store each event once (one statement); returns (event_id, what) for the events stored now
    ("new": send it to the apply actor; "agrees": an outcome its order already records, stored
    applied, nothing to send) and for those an earlier delivery stored but nobody applied yet
    ("resent": an idempotent re-send). An event applied before is not returned: its replay changes
    nothing. A new event's `retry_at` lies `retry_s` ahead, so the sweeper leaves it to the sender."""
    rows = await conn.fetch(
        _STORE, connector, [e.event_id for e in events], [e.kind for e in events], [e.type for e in events],
        [order_uuid(e.order_id) for e in events], [e.psp_reference for e in events],
        [msgspec.json.encode(e).decode() for e in events], raw_body, float(retry_s))
    return [(r["event_id"], r["what"]) for r in rows]


async def lock(conn: asyncpg.Connection, connector: str, event_id: str) -> StoredEvent | None:
    """The event, locked until the caller's transaction ends (one applier at a time)."""
    row = await conn.fetchrow(
        """SELECT connector, event_id, event, received_at, applied_at, apply_attempts, owner_id FROM psp_event
            WHERE connector = $1 AND event_id = $2 FOR UPDATE""", connector, event_id)
    if row is None:
        return None
    return StoredEvent(connector=row["connector"], event_id=row["event_id"],
                       event=msgspec.convert(row["event"], WebhookEvent), received_at=row["received_at"],
                       applied_at=row["applied_at"], apply_attempts=row["apply_attempts"], owner_id=row["owner_id"])


async def mark_applied(conn: asyncpg.Connection, event: StoredEvent, *, result: str, order_id: str | None,
                       note: str | None = None) -> None:
    """Applied (in the transaction that applied it): final from now on."""
    assert result in APPLIED, result
    await conn.execute(
        """UPDATE psp_event SET applied_at = now(), result = $3, applied_order_id = $4, note = $5,
                                apply_attempts = apply_attempts + 1
            WHERE connector = $1 AND event_id = $2""",
        event.connector, event.event_id, result, order_id, note and note[:500])


async def mark_waiting(conn: asyncpg.Connection, event: StoredEvent, *, result: str, note: str,
                       retry_s: float) -> None:
    """Not applicable yet: say why, count the attempt, and let the sweeper try again in `retry_s`."""
    assert result in UNAPPLIED, result
    await conn.execute(
        """UPDATE psp_event SET result = $3, note = $4, apply_attempts = apply_attempts + 1,
                                retry_at = now() + make_interval(secs => $5)
            WHERE connector = $1 AND event_id = $2""",
        event.connector, event.event_id, result, note[:500], float(retry_s))


_DUE = """
WITH due AS (
    SELECT connector, event_id FROM psp_event
     WHERE applied_at IS NULL AND retry_at < now() AND apply_attempts < $2
     ORDER BY retry_at
     LIMIT $1
     FOR UPDATE SKIP LOCKED
)
UPDATE psp_event p SET retry_at = now() + make_interval(secs => $3)
  FROM due WHERE p.connector = due.connector AND p.event_id = due.event_id
RETURNING p.connector, p.event_id
"""


async def claim_due(conn: asyncpg.Connection, *, limit: int, attempts_max: int,
                    retry_s: float) -> list[tuple[str, str]]:
    """Unapplied events whose retry time has come (an enqueue lost, or no order matched yet),
    with attempts left; their retry time moves `retry_s` ahead so the next sweep skips them."""
    rows = await conn.fetch(_DUE, limit, attempts_max, float(retry_s))
    return [(r["connector"], r["event_id"]) for r in rows]


async def unapplied(conn, *, limit: int = 100) -> list[asyncpg.Record]:
    """Events not applied yet, oldest first: what an operator looks at."""
    return await conn.fetch(
        """SELECT connector, event_id, kind, type, payment_order_id::text, psp_reference, result, note,
                  apply_attempts, received_at, retry_at
             FROM psp_event WHERE applied_at IS NULL ORDER BY received_at LIMIT $1""", limit)
