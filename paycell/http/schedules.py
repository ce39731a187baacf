"""The scheduled-payment API: decode, call one function of paycell.schedules.manage, encode.
Same authentication, validation, error shape and idempotency rules as payments; another user's
schedule is a 404."""
from __future__ import annotations

import uuid

import msgspec
import structlog
from aiohttp import web

from paycell import schemas
from paycell.http.cursors import check_query_names, decode_cursor, encode_cursor, limit_of
from paycell.http.errors import json_response
from paycell.http.payments import check_utf8, require_json
from paycell.http.state import CALLER, CURSOR_KEY, POOL, SETTINGS
from paycell.schedules import manage

SCHEDULES_PATH = "/payments/scheduled-payment/v1"


def routes() -> list[web.RouteDef]:
    return [
        web.post(SCHEDULES_PATH, create_schedule),
        web.get(SCHEDULES_PATH, list_schedules),
        web.get(SCHEDULES_PATH + "/{schedule_id}", get_schedule),
        web.put(SCHEDULES_PATH + "/{schedule_id}", change_schedule),
        web.delete(SCHEDULES_PATH + "/{schedule_id}", cancel_schedule),
    ]


async def _body(request: web.Request) -> bytes:
    require_json(request)
    raw = await request.read()
    check_utf8(raw)
    return raw


async def create_schedule(request: web.Request) -> web.Response:
    """201 with the new schedule; a replay (same schedule_id and body) answers the same, marked."""
    raw = await _body(request)
    accepted = await manage.create(request.app[POOL], request.app[SETTINGS], request[CALLER], raw)
    structlog.contextvars.bind_contextvars(schedule_id=accepted.schedule_id)
    headers = {"Location": f"{SCHEDULES_PATH}/{accepted.schedule_id}"}
    if accepted.replayed:
        headers["Idempotent-Replayed"] = "true"
    return json_response(accepted.body, accepted.status, headers)


async def get_schedule(request: web.Request) -> web.Response:
    view = await manage.get(request.app[POOL], request[CALLER], request.match_info["schedule_id"])
    return json_response(msgspec.json.encode(view))


async def change_schedule(request: web.Request) -> web.Response:
    raw = await _body(request)
    view = await manage.change(request.app[POOL], request.app[SETTINGS], request[CALLER],
                               request.match_info["schedule_id"], raw)
    return json_response(msgspec.json.encode(view))


async def cancel_schedule(request: web.Request) -> web.Response:
    view = await manage.cancel(request.app[POOL], request[CALLER], request.match_info["schedule_id"])
    return json_response(msgspec.json.encode(view))


async def list_schedules(request: web.Request) -> web.Response:
    """The caller's schedules, newest first, a page at a time (`limit`, `starting_after`)."""
    caller = request[CALLER]
    check_query_names(request.query, ("limit", "starting_after"))
    limit = limit_of(request.query)
    cursor = request.query.get("starting_after")
    before = None if cursor is None else decode_cursor(request.app[CURSOR_KEY], caller, cursor)
    views, has_more, last = await manage.list_page(request.app[POOL], caller, limit=limit, before=before)
    next_cursor = (encode_cursor(request.app[CURSOR_KEY], caller, last.created_at, str(uuid.UUID(last.schedule_id)))
                   if has_more and last else None)
    return json_response(msgspec.json.encode(schemas.ScheduleList(data=views, has_more=has_more,
                                                                  next_cursor=next_cursor)))
