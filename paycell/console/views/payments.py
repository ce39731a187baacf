"""Payments search, and one payment with its orders and its whole event timeline.

A search box takes what an operator has at hand: a payment id (a checkout UUID), an order id, a
user id, or a provider's charge reference; a status narrows the list. A payment's page is
addressed by (user id, payment id), the row's key, so it reads one shard under Citus; only finding
the user of a bare id is a fan-out probe (migration 0023).

A payment's page also lists its reversals and, while some of it can be reversed, offers the
reversal form, which calls the operator API's own reversal (paycell.http.reversals)."""
from __future__ import annotations

import uuid

import structlog
from aiohttp import web

from paycell import schemas
from paycell.console.pages import path_part, redirect, render
from paycell.console.state import OPERATOR
from paycell.errors import InvalidRequest, NotFound, PaycellError
from paycell.http.reversals import reverse_and_send
from paycell.http.state import POOL, SETTINGS
from paycell.money import format_amount
from paycell.psp import registry
from paycell.refs import TOKEN, USER_ID
from paycell.reversals import request as reversal_request
from paycell.store import events, payments
from paycell.store import reversals as reversal_store
from paycell.store import reviews as review_store

log = structlog.get_logger("paycell.console.payments")

STATUSES = ("processing", "requires_action", "succeeded", "partially_refunded", "refunded", "reversed", "returned",
            "failed", "needs_attention")
LIST_MAX = 50
QUERY_CHARS_MAX = 200
REVERSAL_FIELDS = ("amount", "currency", "reason", "key")


def routes() -> list[web.RouteDef]:
    return [
        web.get("/payments", search, name="console.payments"),
        web.get("/payments/{user_id}/{payment_id}", payment, name="console.payment"),
        web.post("/payments/{user_id}/{payment_id}/reversals", reverse, name="console.payment_reverse"),
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


def _payment_key(request: web.Request) -> tuple[str, str]:
    user_id, payment_id = request.match_info["user_id"], _uuid(request.match_info["payment_id"])
    if payment_id is None or not USER_ID.fullmatch(user_id):
        raise NotFound("no such payment")
    return user_id, payment_id


async def payment(request: web.Request) -> web.Response:
    return await _payment_page(request, *_payment_key(request))


async def reverse(request: web.Request) -> web.Response:
    """The reversal form: the API's reversal (reverse_and_send), as the signed-in operator, keyed by
    the form's own random key so that a form sent twice reverses once. A refusal shows the payment
    page again with its code and message, and the operator's entries; nothing was written."""
    user_id, payment_id = _payment_key(request)
    form = await request.post()
    entered = {name: value if isinstance(value := form.get(name), str) else "" for name in REVERSAL_FIELDS}
    with structlog.contextvars.bound_contextvars(payment_id=payment_id):
        try:
            _, created = await reverse_and_send(
                request.config_dict, user_id=user_id, payment_id=payment_id, amount=entered["amount"],
                currency=entered["currency"], reason=entered["reason"], operator=request[OPERATOR],
                request_key=_request_key(entered["key"]))
        except PaycellError as exc:
            if isinstance(exc, NotFound) or exc.http_status >= 500:
                raise
            log.info("console.reversal_refused", user_id=user_id, code=exc.code)
            return await _payment_page(request, user_id, payment_id, refusal=exc, entered=entered)
    done = "reversal_requested" if created else "reversal_repeated"
    return redirect(f"{payment_path(user_id, payment_id)}?done={done}")


def _request_key(form_key: str) -> str:
    """The reversal's idempotency key: the form's random UUID, in the console's own namespace."""
    try:
        return f"console:{uuid.UUID(form_key)}"
    except ValueError:
        raise InvalidRequest("this form's key is missing or malformed: reload the page and try again",
                             field="key") from None


async def _payment_page(request: web.Request, user_id: str, payment_id: str, *, refusal: PaycellError | None = None,
                        entered: dict[str, str] | None = None) -> web.Response:
    async with request.config_dict[POOL].acquire() as conn:
        found = await payments.get(conn, user_id, payment_id)
        if found is None:
            raise NotFound("no such payment")
        req, orders = found
        history = await events.for_payment(conn, user_id, payment_id)
        items = [item for o in orders if (item := await review_store.for_order(conn, user_id, o["payment_order_id"]))]
        taken = await reversal_store.for_payment(conn, user_id, payment_id)
        offered_minor = await reversal_request.offer(conn, user_id, payment_id)
    view = schemas.payment_view(req, orders)
    form = None
    if offered_minor is not None:
        # A new key per rendering: one form, one reversal, however often it is sent.
        form = {"amount": format_amount(offered_minor, view.currency), "currency": view.currency, "reason": "",
                **(entered or {}), "key": str(uuid.uuid4())}
    return render(request, "payment.html", {
        "payment": view, "events": schemas.operator_events(history), "reviews": items,
        "reversals": [schemas.reversal_view(r) for r in taken], "reversal_form": form,
        "reversal_path": f"{payment_path(user_id, payment_id)}/reversals", "refusal": refusal},
        status=refusal.http_status if refusal is not None else 200)
