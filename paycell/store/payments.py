"""Queries for payment requests and payment orders (the seed's two tables)."""
from __future__ import annotations

import datetime

import asyncpg
import msgspec

from paycell import workflow
from paycell.store import events
from paycell.workflow import Order

_ORDER_COLUMNS = ("payment_order_id::text, payment_id::text, user_id, kind, from_acct, to_acct, amount_minor, "
                  "currency, payment_order_status, ledger_updated, wallet_updated, psp, psp_reference, attempt")
# The columns a step may set besides the state; names come from code, values are parameters.
_SETTABLE = frozenset({"ledger_updated", "wallet_updated", "psp", "psp_reference", "attempt",
                       "lease_until", "failure_code", "last_error"})
DONE_CHANNEL = "paycell_payment_done"


def lease(seconds: float) -> datetime.datetime:
    """A lease ending `seconds` from now. Leases are coarse (seconds), so the app's clock is enough."""
    return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)


class NewPayment(msgspec.Struct, kw_only=True, frozen=True):
    payment_id: str
    payment_order_id: str
    user_id: str
    kind: str
    payment_option: str
    from_acct: str
    to_acct: str
    amount_minor: int
    currency: str
    created_at: datetime.datetime
    notify_on_done: bool = False
    scheduled_payment_id: str | None = None


async def insert(conn: asyncpg.Connection, p: NewPayment, *, lease_s: int, deadline_s: int) -> None:
    """The payment request, its order in state `requested`, and `payment.requested` in the log."""
    await conn.execute(
        """INSERT INTO payment_request (payment_id, user_id, payment_option, kind, from_acct, to_acct,
                                        amount_minor, currency, notify_on_done, scheduled_payment_id,
                                        created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)""",
        p.payment_id, p.user_id, p.payment_option, p.kind, p.from_acct, p.to_acct, p.amount_minor,
        p.currency, p.notify_on_done, p.scheduled_payment_id, p.created_at)
    await conn.execute(
        """INSERT INTO payment_order (payment_order_id, payment_id, user_id, kind, from_acct, to_acct,
                                      amount_minor, currency, payment_order_status, lease_until, deadline_at,
                                      created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'requested',
                   now() + make_interval(secs => $9), now() + make_interval(secs => $10), $11, $11)""",
        p.payment_order_id, p.payment_id, p.user_id, p.kind, p.from_acct, p.to_acct, p.amount_minor,
        p.currency, lease_s, deadline_s, p.created_at)
    await events.append(conn, user_id=p.user_id, type="payment.requested", payment_id=p.payment_id,
                        payment_order_id=p.payment_order_id,
                        data={"kind": p.kind, "amount_minor": p.amount_minor, "currency": p.currency,
                              "from_acct": p.from_acct, "to_acct": p.to_acct, "payment_option": p.payment_option})


async def lock_order(conn: asyncpg.Connection, order_id: str) -> Order | None:
    """The order, locked FOR UPDATE until the caller's transaction ends: per-payment serialisation."""
    row = await conn.fetchrow(f"SELECT {_ORDER_COLUMNS} FROM payment_order WHERE payment_order_id = $1 FOR UPDATE",
                              order_id)
    return _order(row) if row else None


async def read_order(conn, order_id: str) -> Order | None:
    row = await conn.fetchrow(f"SELECT {_ORDER_COLUMNS} FROM payment_order WHERE payment_order_id = $1", order_id)
    return _order(row) if row else None


def _order(row: asyncpg.Record) -> Order:
    return Order(**{k: (v.strip() if k == "currency" else v) for k, v in row.items()})


async def move(conn: asyncpg.Connection, order: Order, to: str, *, event: str, data: dict | None = None,
               **fields) -> None:
    """Advance a locked order to `to` (checked against the workflow table), set `fields`, log
    `event`; when `to` is terminal, close the payment request and wake any waiting client."""
    workflow.check_transition(order.payment_order_status, to)
    unknown = set(fields) - _SETTABLE
    if unknown:
        raise ValueError(f"not settable on an order: {sorted(unknown)}")
    names = list(fields)
    sets = "".join(f", {name} = ${i + 3}" for i, name in enumerate(names))
    await conn.execute(
        f"UPDATE payment_order SET payment_order_status = $2, updated_at = now(){sets} WHERE payment_order_id = $1",
        order.payment_order_id, to, *(fields[n] for n in names))
    await events.append(conn, user_id=order.user_id, type=event, payment_id=order.payment_id,
                        payment_order_id=order.payment_order_id,
                        data={"from": order.payment_order_status, "to": to, **(data or {})})
    if order.payment_order_status in workflow.TERMINAL and to in workflow.LIVE:  # reopened by an operator
        await conn.execute("""UPDATE payment_request SET status = 'processing', is_complete = false,
                                     failure_code = NULL, updated_at = now()
                               WHERE user_id = $1 AND payment_id = $2""", order.user_id, order.payment_id)
    if to in workflow.TERMINAL:
        notify = await conn.fetchval(
            """UPDATE payment_request SET status = $3, is_complete = $4, failure_code = $5, updated_at = now()
                WHERE user_id = $1 AND payment_id = $2 RETURNING notify_on_done""",
            order.user_id, order.payment_id, workflow.payment_status(to), to != "needs_attention",
            fields.get("failure_code"))
        if notify:
            await conn.execute("SELECT pg_notify($1, $2)", DONE_CHANNEL, f"{order.user_id} {order.payment_id}")
    order.payment_order_status = to
    for name, value in fields.items():
        if hasattr(order, name):
            setattr(order, name, value)


async def get(conn, user_id: str, payment_id: str) -> tuple[asyncpg.Record, list[asyncpg.Record]] | None:
    """A payment request and its orders, scoped to the user (another user's payment is None)."""
    req = await conn.fetchrow(
        """SELECT payment_id::text, user_id, payment_option, kind, from_acct, to_acct, amount_minor, currency,
                  status, failure_code, is_complete, created_at, updated_at
             FROM payment_request WHERE user_id = $1 AND payment_id = $2""", user_id, payment_id)
    if req is None:
        return None
    orders = await conn.fetch(
        f"""SELECT {_ORDER_COLUMNS}, failure_code, created_at, updated_at FROM payment_order
             WHERE user_id = $1 AND payment_id = $2 ORDER BY created_at""", user_id, payment_id)
    return req, orders


async def orders_for(conn, user_id: str, payment_ids: list[str]) -> dict[str, list[asyncpg.Record]]:
    """The orders of several of a user's payments, by payment id, in one query."""
    rows = await conn.fetch(
        f"""SELECT {_ORDER_COLUMNS}, failure_code, created_at, updated_at FROM payment_order
             WHERE user_id = $1 AND payment_id = ANY($2::uuid[]) ORDER BY created_at""", user_id, payment_ids)
    found: dict[str, list[asyncpg.Record]] = {pid: [] for pid in payment_ids}
    for row in rows:
        found[row["payment_id"]].append(row)
    return found


async def list_recent(conn, user_id: str, *, limit: int, before: tuple | None) -> list[asyncpg.Record]:
    """The user's payments, newest first, keyset-paginated on (created_at, payment_id)."""
    cols = """payment_id::text, user_id, payment_option, kind, from_acct, to_acct, amount_minor, currency,
              status, failure_code, is_complete, created_at, updated_at"""
    if before is None:
        return await conn.fetch(
            f"""SELECT {cols} FROM payment_request WHERE user_id = $1
                ORDER BY created_at DESC, payment_id DESC LIMIT $2""", user_id, limit)
    return await conn.fetch(
        f"""SELECT {cols} FROM payment_request WHERE user_id = $1 AND (created_at, payment_id) < ($3, $4::uuid)
            ORDER BY created_at DESC, payment_id DESC LIMIT $2""", user_id, limit, before[0], before[1])


async def status_of(conn, user_id: str, payment_id: str) -> str | None:
    return await conn.fetchval("SELECT status FROM payment_request WHERE user_id = $1 AND payment_id = $2",
                               user_id, payment_id)


async def reopen(conn, order_id: str, *, lease_s: int, reason: str) -> str | None:
    """Put an order that needs attention back in the live state it was left in (a dead letter
    replayed by an operator); returns that state, or None when there is nothing to reopen."""
    order = await lock_order(conn, order_id)
    if order is None or order.payment_order_status != "needs_attention":
        return None
    left_in = await conn.fetchval(
        """SELECT data->>'from' FROM event WHERE payment_order_id = $1 AND type = 'order.needs_attention'
            ORDER BY event_id DESC LIMIT 1""", order_id)
    if left_in not in workflow.REOPENABLE:
        return None
    await move(conn, order, left_in, event="order.reopened", data={"reason": reason},
               attempt=order.attempt + 1, lease_until=lease(lease_s), failure_code=None)
    return left_in
