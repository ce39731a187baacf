"""Queries of the review queue (migration 0015: review_item). Every write names (user_id,
review_id), the table's key; `locate` is the one read by review_id alone (paycell/reviews.py
says why the API addresses items that way)."""
from __future__ import annotations

import datetime
import uuid

import asyncpg
import msgspec

RESOLVED = frozenset({"approved", "declined", "expired"})
UNRESOLVED = ("open", "claimed")
STATES = ("open", "claimed", "approved", "declined", "expired")

_COLUMNS = ("user_id, review_id::text, kind, payment_id::text, payment_order_id::text, reasons, evidence, state, "
            "claimed_by, claimed_at, resolved_by, resolved_at, outcome, note, expires_at, created_at, action_taken")


class Item(msgspec.Struct, kw_only=True):
    """One review_item row."""
    user_id: str
    review_id: str
    kind: str
    payment_id: str | None
    payment_order_id: str | None
    reasons: list[str]
    evidence: dict
    state: str
    claimed_by: str | None
    claimed_at: datetime.datetime | None
    resolved_by: str | None
    resolved_at: datetime.datetime | None
    outcome: str | None
    note: str | None
    expires_at: datetime.datetime
    created_at: datetime.datetime
    action_taken: str | None = None  # a reconciliation item: what the operator did (migration 0021)
    claim_lapsed: bool | None = None  # set by `lock`: the claim is older than the claim time

    @property
    def resolved(self) -> bool:
        return self.state in RESOLVED


def _item(row) -> Item:
    return Item(**dict(row.items()))


class Located(msgspec.Struct, frozen=True):
    user_id: str
    kind: str
    payment_order_id: str | None


async def insert_payment_item(conn: asyncpg.Connection, *, user_id: str, payment_id: str, order_id: str,
                              reasons: list[str], evidence: dict, expires_at: datetime.datetime) -> tuple[str, bool]:
    """Open the item of a payment order once: (its review_id, True) when inserted now, (the
    existing item's review_id, False) when the order had one already (unique per order)."""
    review_id = await conn.fetchval(
        """INSERT INTO review_item (user_id, review_id, kind, payment_id, payment_order_id, reasons, evidence,
                                    expires_at)
           VALUES ($1, $2, 'payment', $3, $4, $5, $6, $7)
           ON CONFLICT ON CONSTRAINT review_item_one_per_order DO NOTHING
           RETURNING review_id::text""",
        user_id, uuid.uuid4(), payment_id, order_id, reasons, evidence, expires_at)
    if review_id is not None:
        return review_id, True
    existing = await conn.fetchval(
        "SELECT review_id::text FROM review_item WHERE user_id = $1 AND payment_order_id = $2", user_id, order_id)
    return existing, False


async def locate(conn, review_id: str) -> Located | None:
    """Whose item `review_id` is (index review_item_by_id); None when no item, or (never seen with
    random ids) several, have it."""
    rows = await conn.fetch("SELECT user_id, kind, payment_order_id::text FROM review_item WHERE review_id = $1 LIMIT 2",
                            uuid.UUID(review_id))
    return Located(rows[0]["user_id"], rows[0]["kind"], rows[0]["payment_order_id"]) if len(rows) == 1 else None


async def get(conn, user_id: str, review_id: str) -> Item | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM review_item WHERE user_id = $1 AND review_id = $2",
                              user_id, uuid.UUID(review_id))
    return _item(row) if row else None


async def for_order(conn, user_id: str, order_id: str) -> Item | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM review_item WHERE user_id = $1 AND payment_order_id = $2",
                              user_id, order_id)
    return _item(row) if row else None


async def lock(conn, user_id: str, review_id: str, *, claim_s: int, skip_locked: bool = False) -> Item | None:
    """The item locked FOR UPDATE (SKIP LOCKED: None when another transaction holds it), with
    whether its claim has lapsed (older than `claim_s`), by the database's clock."""
    row = await conn.fetchrow(
        f"""SELECT {_COLUMNS}, claimed_at < now() - make_interval(secs => $3) AS claim_lapsed
              FROM review_item WHERE user_id = $1 AND review_id = $2
               FOR UPDATE{' SKIP LOCKED' if skip_locked else ''}""",
        user_id, uuid.UUID(review_id), float(claim_s))
    return _item(row) if row else None


async def claim(conn, user_id: str, review_id: str, *, by: str, claim_s: int) -> Item | None:
    """Claim the item for `by` in one guarded statement: when open, when `by` holds the claim
    (renewed), or when another's claim has lapsed. None when none of these holds."""
    row = await conn.fetchrow(
        f"""UPDATE review_item SET state = 'claimed', claimed_by = $3, claimed_at = now()
             WHERE user_id = $1 AND review_id = $2
               AND (state = 'open' OR (state = 'claimed' AND (claimed_by = $3
                                       OR claimed_at < now() - make_interval(secs => $4))))
            RETURNING {_COLUMNS}""",
        user_id, uuid.UUID(review_id), by, float(claim_s))
    return _item(row) if row else None


async def resolve(conn, user_id: str, review_id: str, *, state: str, outcome: str, by: str,
                  note: str | None, action_taken: str | None = None) -> Item:
    """Resolve a locked, unresolved item (the caller checked); the guard refuses a resolved one."""
    row = await conn.fetchrow(
        f"""UPDATE review_item SET state = $3, outcome = $4, resolved_by = $5, resolved_at = now(), note = $6,
                                   action_taken = $7
             WHERE user_id = $1 AND review_id = $2 AND state IN ('open', 'claimed')
            RETURNING {_COLUMNS}""",
        user_id, uuid.UUID(review_id), state, outcome, by, note, action_taken)
    if row is None:
        raise RuntimeError(f"review item {review_id} was not unresolved under its lock")
    return _item(row)


async def page(conn, *, state: str, limit: int, after: tuple[datetime.datetime, str] | None) -> list[Item]:
    """Items in `state`, oldest first, keyset-paginated on (created_at, review_id) (index
    review_item_queue; across users: see the migration's note on Citus)."""
    if after is None:
        rows = await conn.fetch(f"""SELECT {_COLUMNS} FROM review_item WHERE state = $1
                                     ORDER BY created_at, review_id LIMIT $2""", state, limit)
    else:
        rows = await conn.fetch(f"""SELECT {_COLUMNS} FROM review_item
                                     WHERE state = $1 AND (created_at, review_id) > ($3, $4::uuid)
                                     ORDER BY created_at, review_id LIMIT $2""", state, limit, after[0], after[1])
    return [_item(r) for r in rows]


async def due(conn, *, limit: int) -> list[str]:
    """Review ids of unresolved items past their expiry, soonest expired first (index review_item_expiring)."""
    rows = await conn.fetch("""SELECT review_id::text FROM review_item
                                WHERE state IN ('open', 'claimed') AND expires_at <= now()
                                ORDER BY expires_at LIMIT $1""", limit)
    return [r["review_id"] for r in rows]
