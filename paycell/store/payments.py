"""Queries for payment requests and payment orders (the seed's two tables)."""
from __future__ import annotations

import datetime
import uuid
from typing import Any

import asyncpg
import msgspec

from paycell import workflow
from paycell.metrics import outcomes
from paycell.workflow import Order

_ORDER_COLUMNS = ("payment_order_id::text, payment_id::text, user_id, kind, payment_option, from_acct, to_acct, "
                  "amount_minor, currency, payment_order_status, ledger_updated, wallet_updated, psp, psp_reference, "
                  "attempt, psp_candidates, psp_attempt_no, psp_attempt_from, psp_unknown_at, deadline_at, created_at")
_REQUEST_COLUMNS = """payment_id::text, user_id, payment_option, kind, from_acct, to_acct, amount_minor, currency,
                      status, failure_code, is_complete, created_at, updated_at, reversed_minor"""
# The connectors an order was sent to (psp_attempt), oldest first, for the API's order view.
_ATTEMPTS = """(SELECT coalesce(jsonb_agg(jsonb_build_object('attempt_no', a.attempt_no, 'connector', a.connector,
                                                     'reason', a.reason) ORDER BY a.attempt_no), '[]'::jsonb)
                  FROM psp_attempt a WHERE a.user_id = o.user_id AND a.payment_order_id = o.payment_order_id)
               AS psp_attempts"""
# The columns a step may set besides the state; names come from code, values are parameters.
_SETTABLE = frozenset({"ledger_updated", "wallet_updated", "psp", "psp_reference", "attempt",
                       "lease_until", "failure_code", "last_error", "psp_candidates", "psp_attempt_no",
                       "psp_attempt_from", "psp_unknown_at", "deadline_at", "action_url", "action_expires_at"})
DONE_CHANNEL = "paycell_payment_done"
REQUEST_PKEY = "payment_request_pkey"  # (user_id, payment_id): outlives the idempotency key


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
    client_ip: str | None = None  # where the request came from (paycell/http/client.py)
    client_country: str | None = None


class Gate(msgspec.Struct, frozen=True, kw_only=True):
    """The counterparty a payment must name, checked in the statement that accepts it.

    A transfer's payee must be a registered user whose wallet is open; a pay-in's or pay-out's
    instrument must be attached by the payer, with the payment's option, on one of `connectors`
    (the payment's route)."""
    payee_user_id: str | None = None
    connectors: list[str] | None = None
    provider_token: str | None = None


_GATE = """
    SELECT CASE
        WHEN {payee}::text IS NOT NULL THEN
            EXISTS (SELECT FROM app_user WHERE user_id = {payee} AND wallet_status = 'open')
        WHEN {token}::text IS NOT NULL THEN
            EXISTS (SELECT FROM instrument WHERE user_id = {user} AND connector = ANY({connectors}::text[])
                                             AND provider_token = {token} AND payment_option = {option}
                                             AND detached_at IS NULL)
        ELSE true END AS ok"""
_ACCEPT = """
WITH gate AS (""" + _GATE.format(payee="$20", token="$22", user="$2", connectors="$21", option="$3") + """
), claim AS (
    INSERT INTO idempotency_key (user_id, key, request_sha256, response_status, response_body, locked_until)
    SELECT $2, $1::text, $13, $14, $15, CASE WHEN $16 > 0 THEN now() + make_interval(secs => $16) END
      FROM gate WHERE gate.ok
    ON CONFLICT (user_id, key) DO NOTHING
    RETURNING 1
), request AS (
    INSERT INTO payment_request (payment_id, user_id, payment_option, kind, from_acct, to_acct, amount_minor,
                                 currency, notify_on_done, scheduled_payment_id, created_at, updated_at,
                                 client_ip, client_country)
    SELECT $1::uuid, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $23::inet, $24 FROM claim
), payment_order AS (
    INSERT INTO payment_order (payment_order_id, payment_id, user_id, kind, payment_option, from_acct, to_acct,
                               amount_minor, currency, payment_order_status, lease_until, deadline_at, created_at,
                               updated_at)
    SELECT $12::uuid, $1::uuid, $2, $4, $3, $5, $6, $7, $8, 'requested', now() + make_interval(secs => $17),
           now() + make_interval(secs => $18), $11, $11 FROM claim
), logged AS (
    INSERT INTO event (user_id, payment_id, payment_order_id, type, data)
    SELECT $2, $1::uuid, $12::uuid, 'payment.requested', $19::jsonb FROM claim
)
SELECT CASE WHEN (SELECT ok FROM gate) THEN (SELECT count(*) FROM claim) ELSE -1 END
"""


async def gate_open(conn: asyncpg.Connection, user_id: str, payment_option: str, gate: Gate) -> bool:
    """Whether the gate would let a payment of `user_id` through now (the check `accept` makes):
    for a schedule, which names its counterparty long before its payments."""
    return await conn.fetchval(_GATE.format(payee="$1", token="$3", user="$4", connectors="$2", option="$5"),
                               gate.payee_user_id, gate.connectors, gate.provider_token, user_id, payment_option)


async def accept(conn: asyncpg.Connection, p: NewPayment, *, request_sha256: bytes, response_status: int,
                 response_body: bytes, lock_s: float, lease_s: int, deadline_s: int,
                 gate: Gate | None = None) -> bool | None:
    """In one statement: check the `gate`, claim the idempotency key (user, payment_id) with the
    response to replay, and only when claimed insert the payment request, its order in `requested`
    and `payment.requested` in the log. False when the key was claimed before, None when the gate
    refused the counterparty: nothing written either way. A concurrent claim of the same key waits
    for the first statement's transaction to end. The gate costs no round trip of its own: one
    primary-key or unique-index probe inside this statement."""
    claimed = await conn.fetchval(_ACCEPT, *_accept_args(p, request_sha256, response_status, response_body,
                                                         lock_s, lease_s, deadline_s, gate))
    return None if claimed == -1 else claimed == 1


class Acceptance(msgspec.Struct, frozen=True):
    """One payment for accept_many: the payment, what its key replays, and its gate."""
    payment: NewPayment
    request_sha256: bytes
    response_body: bytes
    gate: Gate


async def accept_many(conn: asyncpg.Connection, items: list[Acceptance], *, response_status: int, lease_s: int,
                      deadline_s: int) -> list[bool | None]:
    """`accept` for each item, the same statement pipelined (one round trip for the batch), in the
    caller's transaction: what the schedule clock does for the occurrences it claimed. One result
    per item, as `accept` answers it. Keys are not held (lock_s 0): each answer is final."""
    if not items:
        return []
    rows = await conn.fetchmany(_ACCEPT, [_accept_args(i.payment, i.request_sha256, response_status,
                                                       i.response_body, 0, lease_s, deadline_s, i.gate)
                                          for i in items])
    return [None if row[0] == -1 else row[0] == 1 for row in rows]


def _accept_args(p: NewPayment, request_sha256: bytes, response_status: int, response_body: bytes, lock_s: float,
                 lease_s: int, deadline_s: int, gate: Gate | None) -> tuple:
    gate = gate or Gate()
    return (p.payment_id, p.user_id, p.payment_option, p.kind, p.from_acct, p.to_acct, p.amount_minor,
            p.currency, p.notify_on_done, p.scheduled_payment_id, p.created_at, p.payment_order_id,
            request_sha256, response_status, response_body, float(lock_s), lease_s, deadline_s,
            {"kind": p.kind, "amount_minor": p.amount_minor, "currency": p.currency, "from_acct": p.from_acct,
             "to_acct": p.to_acct, "payment_option": p.payment_option},
            gate.payee_user_id, gate.connectors, gate.provider_token, p.client_ip, p.client_country)


async def lock_order(conn: asyncpg.Connection, user_id: str, order_id: str) -> Order | None:
    """The order, locked FOR UPDATE until the caller's transaction ends: per-payment serialisation.
    By its primary key (user_id, payment_order_id): on Citus a router query to the user's shard."""
    row = await conn.fetchrow(f"SELECT {_ORDER_COLUMNS} FROM payment_order WHERE user_id = $1 "
                              "AND payment_order_id = $2 FOR UPDATE", user_id, order_id)
    return _order(row) if row else None


async def lock_order_skip_locked(conn: asyncpg.Connection, user_id: str, order_id: str) -> Order | None:
    """lock_order, or None at once when another transaction holds the order (or it is missing):
    for background runners that must never queue behind a step (the review expiry)."""
    row = await conn.fetchrow(f"SELECT {_ORDER_COLUMNS} FROM payment_order WHERE user_id = $1 "
                              "AND payment_order_id = $2 FOR UPDATE SKIP LOCKED", user_id, order_id)
    return _order(row) if row else None


async def set_lease(conn: asyncpg.Connection, order: Order, until: datetime.datetime) -> None:
    """Move a locked order's lease alone (no state change, no event): when the sweeper may next re-drive it."""
    await conn.execute("UPDATE payment_order SET lease_until = $3 WHERE user_id = $1 AND payment_order_id = $2",
                       order.user_id, order.payment_order_id, until)


async def lock_order_with(conn: asyncpg.Connection, user_id: str, order_id: str, expression: str,
                          *args) -> tuple[Order | None, Any]:
    """lock_order, and the value of one more SQL `expression` over the order (its row is `o`;
    parameters from $2 on are `args`) read in the same statement: a step that needs both pays one
    round trip. The expression is code's, never a caller's input."""
    order, extras = await lock_order_with_all(conn, user_id, order_id, (expression,), *args)
    return order, extras[0] if extras else None


async def lock_order_with_all(conn: asyncpg.Connection, user_id: str, order_id: str, expressions: tuple[str, ...],
                              *args) -> tuple[Order | None, tuple]:
    """lock_order_with for several expressions: (the order, their values in order). The order id is
    $1 and the expressions' parameters follow it; the user id comes last (its number is free)."""
    columns = "".join(f", ({e}) AS extra_{i}" for i, e in enumerate(expressions))
    row = await conn.fetchrow(f"SELECT {_ORDER_COLUMNS}{columns} FROM payment_order o "
                              f"WHERE payment_order_id = $1 AND user_id = ${len(args) + 2} FOR UPDATE OF o",
                              order_id, *args, user_id)
    if row is None:
        return None, ()
    fields = dict(row.items())
    extras = tuple(fields.pop(f"extra_{i}") for i in range(len(expressions)))
    return _order(fields), extras


async def owner_of(conn: asyncpg.Connection, order_id: str) -> str | None:
    """The user whose order this is, for the paths that know the order id alone (a provider's
    webhook, a customer's return from a URL without the user, a reconciliation line, a message or a
    dead letter of the old one-id form): they look the owner up here, once, then use the full key.
    Served by the index payment_order_by_id (not unique: the uuid is). On Citus a multi-shard
    query (a probe of every shard), so never on a step's common path."""
    return await conn.fetchval("SELECT user_id FROM payment_order WHERE payment_order_id = $1 LIMIT 1", order_id)


async def order_key(conn: asyncpg.Connection, ids: tuple[str, ...] | list[str]) -> tuple[str, str] | None:
    """(user id, order id) of a payment step's message arguments: (user_id, order_id), or for one
    release the old one-id form (order_id,), sent before the deploy (in flight, or a dead letter
    replayed) whose owner is looked up (owner_of). None when a lone id names no order (or is not
    a UUID): there is nothing for the step to do."""
    if len(ids) == 2:
        return ids[0], ids[1]
    if len(ids) != 1 or not _is_uuid(ids[0]):
        return None
    user_id = await owner_of(conn, ids[0])
    return (user_id, ids[0]) if user_id is not None else None


def _is_uuid(text: object) -> bool:
    try:
        uuid.UUID(str(text))
    except ValueError:
        return False
    return True


async def key_by_reference(conn: asyncpg.Connection, psp: str, psp_reference: str) -> tuple[str, str] | None:
    """(user id, order id) of the order a connector's charge reference belongs to (index
    payment_order_psp_reference), for provider events that do not echo paycell's order id; None
    when none or several do. On Citus a multi-shard query, as owner_of."""
    rows = await conn.fetch("""SELECT user_id, payment_order_id::text FROM payment_order
                                WHERE psp = $1 AND psp_reference = $2 LIMIT 2""", psp, psp_reference)
    return (rows[0]["user_id"], rows[0]["payment_order_id"]) if len(rows) == 1 else None


async def state_of(conn, user_id: str, order_id: str) -> str | None:
    """An order's state, unlocked (a hint for whoever reads it)."""
    return await conn.fetchval("SELECT payment_order_status FROM payment_order WHERE user_id = $1 "
                               "AND payment_order_id = $2", user_id, order_id)


async def read_order(conn, user_id: str, order_id: str) -> Order | None:
    row = await conn.fetchrow(f"SELECT {_ORDER_COLUMNS} FROM payment_order WHERE user_id = $1 "
                              "AND payment_order_id = $2", user_id, order_id)
    return _order(row) if row else None


def _order(row: asyncpg.Record | dict) -> Order:
    return Order(**{k: (v.strip() if k == "currency" else v) for k, v in row.items()})


_MOVE = """
WITH moved AS (
    UPDATE payment_order SET payment_order_status = $2, updated_at = now(){sets}
     WHERE user_id = $9 AND payment_order_id = $1
    RETURNING user_id, payment_id
), logged AS (
    INSERT INTO event (user_id, payment_id, payment_order_id, type, data)
    SELECT moved.user_id, moved.payment_id, $1, e.item->>'type', e.item->'data'
      FROM moved, jsonb_array_elements($3::jsonb) WITH ORDINALITY AS e(item, n)
     ORDER BY e.n
){attempted}, request AS (
    UPDATE payment_request r SET status = $4, is_complete = $5, failure_code = $6, updated_at = now()
      FROM moved
     WHERE $7 AND r.user_id = moved.user_id AND r.payment_id = moved.payment_id
    RETURNING r.notify_on_done, r.user_id, r.payment_id
)
SELECT pg_notify($8, request.user_id || ' ' || request.payment_id::text) FROM request WHERE request.notify_on_done
"""


_ATTEMPTED = """, attempted AS (
    INSERT INTO psp_attempt (user_id, payment_order_id, attempt_no, connector, reason)
    SELECT moved.user_id, $1, ${no}, ${connector}, ${reason} FROM moved
)"""


async def move(conn: asyncpg.Connection, order: Order, to: str, *, event: str, data: dict | None = None,
               milestones: tuple[tuple[str, dict], ...] = (), psp_attempt: tuple[int, str, str] | None = None,
               **fields) -> None:
    """Advance a locked order to `to` (checked against the workflow table) and set `fields`, in
    one statement that also logs the step's `milestones` and then `event`; when the payment's
    status changes with it (`to` is terminal, or the customer must act) it updates the payment
    request and wakes a client waiting on it (NOTIFY, sent at commit). `psp_attempt` (number,
    connector, reason) records the connector the order is sent to, in the same statement (no
    round trip of its own)."""
    workflow.check_transition(order.payment_order_status, to)
    unknown = set(fields) - _SETTABLE
    if unknown:
        raise ValueError(f"not settable on an order: {sorted(unknown)}")
    names = list(fields)
    sets = "".join(f", {name} = ${i + 10}" for i, name in enumerate(names))
    attempted, attempt_args = "", ()
    if psp_attempt is not None:
        n = 10 + len(names)
        attempted = _ATTEMPTED.format(no=n, connector=n + 1, reason=n + 2)
        attempt_args = psp_attempt
    log = [{"type": t, "data": d} for t, d in milestones]
    log.append({"type": event, "data": {"from": order.payment_order_status, "to": to, **(data or {})}})
    reopened = order.payment_order_status in workflow.TERMINAL and to in workflow.LIVE  # by an operator
    closed = to in workflow.TERMINAL
    shown = workflow.payment_status(to) != workflow.payment_status(order.payment_order_status)
    await conn.execute(
        _MOVE.format(sets=sets, attempted=attempted), order.payment_order_id, to, log,
        workflow.payment_status(to), to not in ("needs_attention",) and closed, fields.get("failure_code"),
        closed or reopened or shown, DONE_CHANNEL, order.user_id, *(fields[n] for n in names), *attempt_args)
    order.payment_order_status = to
    for name, value in fields.items():
        if hasattr(order, name):
            setattr(order, name, value)
    if closed:
        outcomes.finished(order, to, fields.get("failure_code"))


async def get(conn, user_id: str, payment_id: str) -> tuple[asyncpg.Record, list[asyncpg.Record]] | None:
    """A payment request and its orders, scoped to the user (another user's payment is None)."""
    req = await conn.fetchrow(f"SELECT {_REQUEST_COLUMNS} FROM payment_request WHERE user_id = $1 AND payment_id = $2",
                              user_id, payment_id)
    if req is None:
        return None
    orders = await conn.fetch(
        f"""SELECT {_ORDER_COLUMNS}, failure_code, action_url, updated_at, {_ATTEMPTS} FROM payment_order o
             WHERE user_id = $1 AND payment_id = $2 ORDER BY created_at""", user_id, payment_id)
    return req, orders


async def orders_for(conn, user_id: str, payment_ids: list[str]) -> dict[str, list[asyncpg.Record]]:
    """The orders of several of a user's payments, by payment id, in one query."""
    rows = await conn.fetch(
        f"""SELECT {_ORDER_COLUMNS}, failure_code, action_url, updated_at, {_ATTEMPTS} FROM payment_order o
             WHERE user_id = $1 AND payment_id = ANY($2::uuid[]) ORDER BY created_at""", user_id, payment_ids)
    found: dict[str, list[asyncpg.Record]] = {pid: [] for pid in payment_ids}
    for row in rows:
        found[row["payment_id"]].append(row)
    return found


async def list_recent(conn, user_id: str, *, limit: int, before: tuple | None) -> list[asyncpg.Record]:
    """The user's payments, newest first, keyset-paginated on (created_at, payment_id)."""
    cols = _REQUEST_COLUMNS
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


async def reopen(conn, user_id: str, order_id: str, *, lease_s: int, reason: str) -> str | None:
    """Put an order that needs attention back in the live state it was left in (a dead letter
    replayed by an operator); returns that state, or None when there is nothing to reopen."""
    order = await lock_order(conn, user_id, order_id)
    if order is None or order.payment_order_status != "needs_attention":
        return None
    left_in = await conn.fetchval(
        """SELECT data->>'from' FROM event WHERE user_id = $2 AND payment_order_id = $1
              AND type = 'order.needs_attention' ORDER BY event_id DESC LIMIT 1""", order_id, user_id)
    if left_in not in workflow.REOPENABLE:
        return None
    await move(conn, order, left_in, event="order.reopened", data={"reason": reason},
               attempt=order.attempt + 1, lease_until=lease(lease_s), failure_code=None)
    return left_in


# -- operators' reads across users (the console: paycell/console) --------------------------------

RECENT_ALL_MAX = 200
STATUS_WINDOW_H = 24  # a status asked for across users: the payments of the last day


async def owners_of(conn, payment_id: str) -> list[str]:
    """The users holding a payment with this id, at most 10 (a payment id is the user's checkout
    UUID, unique per user only). Read from the event log through its index event_payment: every
    payment's `payment.requested` is written with it, and payment_request has no index on the id
    alone (its writes are the hot path). Under Citus a fan-out probe, as review_item_by_id."""
    rows = await conn.fetch("""SELECT DISTINCT user_id FROM event WHERE payment_id = $1 AND type = 'payment.requested'
                                ORDER BY user_id LIMIT 10""", payment_id)
    return [r["user_id"] for r in rows]


async def payment_of_order(conn, order_id: str) -> tuple[str, str] | None:
    """(user id, payment id) of an order known by its id alone (an operator's search), through the
    index payment_order_by_id: on Citus a multi-shard query, as owner_of."""
    row = await conn.fetchrow("SELECT user_id, payment_id::text FROM payment_order WHERE payment_order_id = $1",
                              order_id)
    return (row["user_id"], row["payment_id"]) if row else None


async def payments_of_reference(conn, connectors: list[str], psp_reference: str) -> list[tuple[str, str]]:
    """(user id, payment id) of the orders a provider's reference names on any of `connectors`
    (index payment_order_psp_reference), at most 10."""
    rows = await conn.fetch("""SELECT DISTINCT user_id, payment_id::text FROM payment_order
                                WHERE psp = ANY($1::text[]) AND psp_reference = $2 LIMIT 10""",
                            connectors, psp_reference)
    return [(r["user_id"], r["payment_id"]) for r in rows]


# Every user's payments of the last $2 hours (of status $3 when not NULL), newest first, $1 at most.
RECENT_ACROSS_USERS = f"""SELECT {_REQUEST_COLUMNS} FROM payment_request
                           WHERE created_at >= now() - make_interval(hours => $2)
                             AND ($3::text IS NULL OR status = $3)
                           ORDER BY created_at DESC, payment_id DESC LIMIT $1"""
# Payments created in each of the last $1 minutes, per status now.
COUNTS_PER_MINUTE = """SELECT date_trunc('minute', created_at) AS minute, status, count(*)::int AS n
                         FROM payment_request
                        WHERE created_at >= date_trunc('minute', now()) - make_interval(mins => $1 - 1)
                        GROUP BY 1, 2 ORDER BY 1"""


async def recent_all(conn, *, limit: int, status: str | None = None,
                     user_id: str | None = None) -> list[asyncpg.Record]:
    """Payments of `user_id` (index payment_request_user_recent), or of every user created in the
    last STATUS_WINDOW_H hours (the BRIN index payment_request_created_brin, migration 0025; there is
    no index on the status, which every payment's completion rewrites), of `status` when one is
    asked for, newest first, at most RECENT_ALL_MAX. One statement per shape, so that each plan can
    use its index (a generic plan of `$x IS NULL OR ...` could not)."""
    limit = min(limit, RECENT_ALL_MAX)
    order = "ORDER BY created_at DESC, payment_id DESC LIMIT $1"
    if user_id is not None:
        return await conn.fetch(
            f"""SELECT {_REQUEST_COLUMNS} FROM payment_request
                 WHERE user_id = $2 AND ($3::text IS NULL OR status = $3) {order}""", limit, user_id, status)
    return await conn.fetch(RECENT_ACROSS_USERS, limit, STATUS_WINDOW_H, status)


async def counts_per_minute(conn, *, minutes: int, timeout_ms: int) -> list[asyncpg.Record]:
    """Payments created in each of the last `minutes` minutes, per status now (minute, status,
    n): the BRIN index payment_request_created_brin (migration 0025) finds the window's pages. Its
    cost grows with the payments of the window, so it may run `timeout_ms` at most
    (QueryCanceledError past that)."""
    async with conn.transaction():
        await conn.execute(f"SET LOCAL statement_timeout = {int(timeout_ms)}")
        return await conn.fetch(COUNTS_PER_MINUTE, minutes)
