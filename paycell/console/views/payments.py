"""Payments search, and one payment with its orders and its whole event timeline.

A search box takes what an operator has at hand: a payment id (a checkout UUID), an order id, a
user id, or a provider's charge reference; a status narrows the list. A payment's page is
addressed by (user id, payment id), the row's key, so it reads one shard under Citus; only finding
the user of a bare id is a fan-out probe (migration 0023)."""
from __future__ import annotations

import uuid

from aiohttp import web

from paycell import schemas
from paycell.console.pages import path_part, redirect, render
from paycell.errors import InvalidRequest, NotFound
from paycell.http.state import POOL, SETTINGS
from paycell.psp import registry
from paycell.refs import TOKEN, USER_ID
from paycell.store import events, payments
from paycell.store import reviews as review_store

STATUSES = ("processing", "requires_action", "succeeded", "returned", "failed", "needs_attention")
LIST_MAX = 50
QUERY_CHARS_MAX = 200


def routes() -> list[web.RouteDef]:
    return [
        web.get("/payments", search, name="console.payments"),
        web.get("/payments/{user_id}/{payment_id}", payment, name="console.payment"),
    ]


def payment_path(user_id: str, payment_id: str) -> str:
    return f"/console/payments/{path_part(user_id)}/{path_part(payment_id)}"


async def search(request: web.Request) -> web.Response:
    q = request.query.get("q", "").strip()
    status = request.query.get("status") or None
    if len(q) > QUERY_CHARS_MAX:
        raise InvalidRequest(f"a search is at most {QUERY_CHARS_MAX} characters", field="q")
    if status is not None and status not in STATUSES:
        raise InvalidRequest(f"status must be one of {', '.join(STATUSES)}", field="status")
    settings = request.config_dict[SETTINGS]
    async with request.config_dict[POOL].acquire() as conn:
        found: list[tuple[str, str]] = []
        rows = []
        as_uuid = _uuid(q)
        if as_uuid is not None:
            found = [(user, as_uuid) for user in await payments.owners_of(conn, as_uuid)]
            order = await payments.payment_of_order(conn, as_uuid)
            if order is not None:
                found.append(order)
            if len(found) == 1:
                return redirect(payment_path(*found[0]))
        elif q:
            if USER_ID.fullmatch(q):
                rows = await payments.recent_all(conn, limit=LIST_MAX, status=status, user_id=q)
            if TOKEN.fullmatch(q):
                found = await payments.payments_of_reference(conn, registry.all_names(settings), q)
        else:
            rows = await payments.recent_all(conn, limit=LIST_MAX, status=status)
        listed = {(row["user_id"], row["payment_id"]) for row in rows}
        for user_id, payment_id in dict.fromkeys(found):
            got = await payments.get(conn, user_id, payment_id) if (user_id, payment_id) not in listed else None
            if got is not None:
                rows.append(got[0])
    views = [schemas.payment_view(row, []) for row in rows]
    return render(request, "payments.html", {"q": q, "status": status, "statuses": STATUSES, "payments": views,
                                             "searched": bool(q), "payment_path": payment_path,
                                             "window_h": payments.STATUS_WINDOW_H})


def _uuid(text: str) -> str | None:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


async def payment(request: web.Request) -> web.Response:
    user_id, payment_id = request.match_info["user_id"], _uuid(request.match_info["payment_id"])
    if payment_id is None or not USER_ID.fullmatch(user_id):
        raise NotFound("no such payment")
    async with request.config_dict[POOL].acquire() as conn:
        found = await payments.get(conn, user_id, payment_id)
        if found is None:
            raise NotFound("no such payment")
        req, orders = found
        history = await events.for_payment(conn, user_id, payment_id)
        items = [item for o in orders if (item := await review_store.for_order(conn, user_id, o["payment_order_id"]))]
    return render(request, "payment.html", {"payment": schemas.payment_view(req, orders),
                                            "events": schemas.operator_events(history), "reviews": items})
