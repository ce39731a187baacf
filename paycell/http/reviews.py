"""The operators' review queue API (issue 8). Every handler calls `require_operator` first: a
user's token is answered 403 `forbidden` before anything is read.

    GET  /reviews?state=open&limit=20&starting_after=...   items in a state, oldest first
    GET  /reviews/{review_id}                              an item, its payment, the payment's
                                                           full event history (unfiltered)
    POST /reviews/{review_id}/claim                        claim it (409 review_claimed: another
                                                           operator's claim has not lapsed)
    POST /reviews/{review_id}/approve   {"note": "..."}    resolve it (409 review_resolved when
    POST /reviews/{review_id}/decline   {"note": "..."}    resolved already; 403 review_own_payment)

An item is named by its review_id alone (paycell/reviews.py: why, and what it costs under Citus).
Pages use the signed cursors of the payment list (paycell/http/cursors.py), bound to the state
listed. An approval enqueues `proceed` after its commit; a lost enqueue is re-driven by the sweeper.
"""
from __future__ import annotations

from collections.abc import Mapping

import msgspec
import structlog
from aiohttp import web

from paycell import reviews, schemas
from paycell.errors import InvalidRequest, NotFound
from paycell.http.auth import require_operator
from paycell.http.cursors import check_query_names, decode_cursor, encode_cursor, limit_of
from paycell.http.errors import json_response
from paycell.http.payments import check_utf8, require_json
from paycell.http.state import CURSOR_KEY, ENQUEUE, POOL, SETTINGS
from paycell.store import events, payments
from paycell.store import reviews as store

log = structlog.get_logger("paycell.http.reviews")

REVIEWS_PATH = "/reviews"
_QUERY = ("state", "limit", "starting_after")


def routes() -> list[web.RouteDef]:
    return [
        web.get(REVIEWS_PATH, list_reviews),
        web.get(REVIEWS_PATH + "/{review_id}", get_review),
        web.post(REVIEWS_PATH + "/{review_id}/claim", claim_review),
        web.post(REVIEWS_PATH + "/{review_id}/approve", approve_review),
        web.post(REVIEWS_PATH + "/{review_id}/decline", decline_review),
    ]


def _cursor_scope(state: str) -> str:
    return f"reviews:{state}"


async def list_reviews(request: web.Request) -> web.Response:
    """Items in `state` (default open), oldest first, a page at a time."""
    require_operator(request)
    check_query_names(request.query, _QUERY)
    state = request.query.get("state", "open")
    if state not in store.STATES:
        raise InvalidRequest(f"state must be one of {', '.join(store.STATES)}", field="state")
    limit = limit_of(request.query)
    key = request.app[CURSOR_KEY]
    cursor = request.query.get("starting_after")
    after = decode_cursor(key, _cursor_scope(state), cursor) if cursor is not None else None
    async with request.app[POOL].acquire() as conn:
        rows = await store.page(conn, state=state, limit=limit + 1, after=after)
    page = rows[:limit]
    has_more = len(rows) > limit
    next_cursor = (encode_cursor(key, _cursor_scope(state), page[-1].created_at, page[-1].review_id)
                   if has_more else None)
    body = schemas.ReviewList(data=[schemas.ReviewView(**schemas.review_fields(i)) for i in page],
                              has_more=has_more, next_cursor=next_cursor)
    return json_response(msgspec.json.encode(body))


async def get_review(request: web.Request) -> web.Response:
    """One item with its payment and the payment's whole event log."""
    require_operator(request)
    async with request.app[POOL].acquire() as conn:
        view = await review_detail(conn, request.match_info["review_id"])
    return json_response(msgspec.json.encode(view))


async def review_detail(conn, review_id: str) -> schemas.ReviewDetail:
    """An item, its payment and the payment's full event history (the API's and the CLI's `show`)."""
    review_id = reviews.parse_id(review_id)
    located = await store.locate(conn, review_id)
    item = located and await store.get(conn, located.user_id, review_id)
    if item is None:
        raise NotFound("no such review")
    payment, history, order_state = None, [], None
    if item.payment_id is not None:
        found = await payments.get(conn, item.user_id, item.payment_id)
        if found is not None:
            req, orders = found
            payment = schemas.payment_view(req, orders)
            order_state = next((o["payment_order_status"] for o in orders
                                if o["payment_order_id"] == item.payment_order_id), None)
        history = schemas.operator_events(await events.for_payment(conn, item.user_id, item.payment_id))
    return schemas.ReviewDetail(**schemas.review_fields(item), payment_order_status=order_state,
                                payment=payment, events=history)


async def claim_review(request: web.Request) -> web.Response:
    operator = require_operator(request)
    async with request.app[POOL].acquire() as conn:
        item = await reviews.claim(conn, request.app[SETTINGS], request.match_info["review_id"], by=operator)
    return json_response(msgspec.json.encode(schemas.ReviewView(**schemas.review_fields(item))))


async def approve_review(request: web.Request) -> web.Response:
    return await _resolve(request, "approve")


async def decline_review(request: web.Request) -> web.Response:
    return await _resolve(request, "decline")


async def _resolve(request: web.Request, action: str) -> web.Response:
    operator = require_operator(request)
    body = await _body(request)
    resolved = await resolve_and_proceed(request.config_dict, request.match_info["review_id"], operator=operator,
                                         action=action, note=body.note, action_taken=body.action_taken)
    view = schemas.ReviewView(**schemas.review_fields(resolved.item), payment_order_status=resolved.order_state)
    return json_response(msgspec.json.encode(view))


async def resolve_and_proceed(config: Mapping, review_id: str, *, operator: str, action: str,
                              note: str | None, action_taken: str | None) -> reviews.Resolved:
    """Resolve an item (reviews.resolve) and, once committed, send an approved order to `proceed`:
    the API's and the console's approve and decline. `config` is a request's config_dict (the
    console is a sub-application: the pool, settings and enqueue are its parent's)."""
    async with config[POOL].acquire() as conn:
        resolved = await reviews.resolve(conn, config[SETTINGS], review_id, by=operator, action=action, note=note,
                                         action_taken=action_taken)
    if resolved.proceed:
        try:
            await config[ENQUEUE]("proceed", *resolved.proceed)
        except Exception:  # committed: the sweeper re-drives the order once its lease runs out
            log.error("review.enqueue_failed", user_id=resolved.proceed[0], order_id=resolved.proceed[1],
                      exc_info=True)
    return resolved


async def _body(request: web.Request) -> schemas.ResolveIn:
    """The optional JSON body of a resolution: none at all, or {"note": "..."}."""
    raw = await request.read()
    if not raw:
        return schemas.ResolveIn()
    require_json(request)
    check_utf8(raw)
    try:
        return msgspec.json.decode(raw, type=schemas.ResolveIn)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidRequest(f"invalid body: {str(exc)[:200]}") from None
