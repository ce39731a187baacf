"""`GET /payments/return?user_id=...&order_id=...`: where a provider sends the customer back after
they acted (PayPal approval, 3-D Secure), the `return_url` of every charge (PAYCELL_PSP_RETURN_URL
plus the order's user and id; the provider may add its own parameters, which are ignored).

The order is read by its key (user_id, order_id): one shard on Citus. The user id in the URL is
no credential: it only routes the read, which must match both, so a wrong pair finds nothing. A
URL without it (issued before the key carried the user) resolves the owner first
(payments.owner_of, a multi-shard probe).

No bearer token: it is the customer's browser, coming from the provider. The visit is only a
hint, as a webhook is: when the order still waits for its customer, `charge` is sent, which asks
the provider (and captures there, where it must); the provider's word decides, never the visit.
The answer is the same whatever the order, so the page tells a stranger nothing.
"""
from __future__ import annotations

import uuid

import structlog
from aiohttp import web

from paycell.errors import InvalidRequest
from paycell.http.errors import json_response
from paycell.http.state import ENQUEUE, POOL
from paycell.refs import USER_ID
from paycell.store import payments

log = structlog.get_logger("paycell.http.returns")

RETURN_PATH = "/payments/return"
RETURN_ROUTE = "payment_return"
_ANSWER = b'{"object":"payment_return","received":true}'


def routes() -> list[web.RouteDef]:
    return [web.get(RETURN_PATH, customer_returned, name=RETURN_ROUTE)]


async def customer_returned(request: web.Request) -> web.Response:
    try:
        order_id = str(uuid.UUID(request.query.get("order_id", "")))
    except ValueError:
        raise InvalidRequest("order_id must be the order's UUID", field="order_id") from None
    user_id = request.query.get("user_id") or None
    if user_id is not None and not USER_ID.fullmatch(user_id):
        raise InvalidRequest("user_id is not a user id", field="user_id")
    async with request.app[POOL].acquire() as conn:
        if user_id is None:
            user_id = await payments.owner_of(conn, order_id)
        state = user_id and await payments.state_of(conn, user_id, order_id)
    if state == "requires_action":
        log.info("customer.returned", user_id=user_id, order_id=order_id)
        try:
            await request.app[ENQUEUE]("charge", user_id, order_id)
        except Exception:  # a hint only: the poll and the webhook still move the order
            log.warning("enqueue.failed", order_id=order_id, exc_info=True)
    return json_response(_ANSWER)
