"""The review queue: items by state, one item with its payment and timeline, and the operator's
claim, approval and decline with a note (paycell.reviews, through the API's own functions)."""
from __future__ import annotations

import msgspec
from aiohttp import web

from paycell import reviews, schemas
from paycell.console.pages import path_part, redirect, render
from paycell.console.state import OPERATOR
from paycell.errors import InvalidRequest
from paycell.http.reviews import resolve_and_proceed, review_detail
from paycell.http.state import POOL, SETTINGS
from paycell.store import reviews as store

LIST_MAX = 50


def routes() -> list[web.RouteDef]:
    return [
        web.get("/reviews", list_reviews, name="console.reviews"),
        web.get("/reviews/{review_id}", review, name="console.review"),
        web.post("/reviews/{review_id}/claim", claim, name="console.review_claim"),
        web.post("/reviews/{review_id}/approve", approve, name="console.review_approve"),
        web.post("/reviews/{review_id}/decline", decline, name="console.review_decline"),
    ]


def review_path(review_id: str) -> str:
    return f"/console/reviews/{path_part(review_id)}"


async def list_reviews(request: web.Request) -> web.Response:
    state = request.query.get("state", "open")
    if state not in store.STATES:
        raise InvalidRequest(f"state must be one of {', '.join(store.STATES)}", field="state")
    async with request.config_dict[POOL].acquire() as conn:
        items = await store.page(conn, state=state, limit=LIST_MAX, after=None)
    return render(request, "reviews.html", {"state": state, "states": store.STATES, "items": items,
                                            "review_path": review_path})


async def review(request: web.Request) -> web.Response:
    async with request.config_dict[POOL].acquire() as conn:
        detail = await review_detail(conn, request.match_info["review_id"])
    return render(request, "review.html", {"item": detail, "review_path": review_path})


async def claim(request: web.Request) -> web.Response:
    review_id = request.match_info["review_id"]
    async with request.config_dict[POOL].acquire() as conn:
        item = await reviews.claim(conn, request.config_dict[SETTINGS], review_id, by=request[OPERATOR])
    return redirect(f"{review_path(item.review_id)}?done=claimed")


async def approve(request: web.Request) -> web.Response:
    return await _resolve(request, "approve")


async def decline(request: web.Request) -> web.Response:
    return await _resolve(request, "decline")


async def _resolve(request: web.Request, action: str) -> web.Response:
    form = await request.post()
    fields = {name: value.strip() for name in ("note", "action_taken")
              if isinstance(value := form.get(name), str) and value.strip()}
    try:
        body = msgspec.convert(fields, schemas.ResolveIn)  # the API's bounds on a note and an action
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"invalid form: {str(exc)[:200]}") from None
    resolved = await resolve_and_proceed(request.config_dict, request.match_info["review_id"],
                                         operator=request[OPERATOR], action=action, note=body.note,
                                         action_taken=body.action_taken)
    return redirect(f"{review_path(resolved.item.review_id)}?done={action}d")
