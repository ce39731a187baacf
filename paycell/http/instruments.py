"""The instrument API: attach a PSP token (idempotent), list the caller's, detach one.
Handlers decode, call one function of the domain, encode. Another user's instrument is a 404."""
from __future__ import annotations

import msgspec
from aiohttp import web

from paycell import checkout, instruments, schemas
from paycell.errors import NotFound
from paycell.http.errors import json_response
from paycell.http.cursors import encode_cursor
from paycell.http.payments import _list_query, check_utf8, require_json
from paycell.http.state import CALLER, CURSOR_KEY, POOL, SETTINGS
from paycell.store import instruments as store

INSTRUMENTS_PATH = "/payments/instrument/v1"


def routes() -> list[web.RouteDef]:
    return [
        web.post(INSTRUMENTS_PATH, attach_instrument),
        web.get(INSTRUMENTS_PATH, list_instruments),
        web.delete(INSTRUMENTS_PATH + "/{instrument_id}", detach_instrument),
    ]


async def attach_instrument(request: web.Request) -> web.Response:
    """201 with the new instrument; 200 with the one attached before when the caller already has
    this token attached on this connector."""
    require_json(request)
    raw = await request.read()
    check_utf8(raw)
    body = checkout.decode(raw, schemas.InstrumentIn)
    view, created = await instruments.attach(request.app[POOL], request.app[SETTINGS], request[CALLER], body)
    return json_response(msgspec.json.encode(view), 201 if created else 200)


async def list_instruments(request: web.Request) -> web.Response:
    """The caller's attached instruments, newest first, a page at a time (`limit`, `starting_after`)."""
    caller, query = request[CALLER], _list_query(request)
    async with request.app[POOL].acquire() as conn:
        rows = await store.list_attached(conn, caller, limit=query.limit + 1, before=query.before)
    page, has_more = rows[:query.limit], len(rows) > query.limit
    cursor = (encode_cursor(request.app[CURSOR_KEY], caller, page[-1]["created_at"],
                            page[-1]["instrument_id"]) if has_more else None)
    return json_response(msgspec.json.encode(schemas.InstrumentList(
        data=[schemas.instrument_view(row) for row in page], has_more=has_more, next_cursor=cursor)))


async def detach_instrument(request: web.Request) -> web.Response:
    """Detach one of the caller's instruments (again: the same answer); past payments keep it."""
    instrument_id = instruments.parse_id(request.match_info["instrument_id"])
    async with request.app[POOL].acquire() as conn:
        row = await store.detach(conn, request[CALLER], instrument_id)
    if row is None:
        raise NotFound("no such instrument")
    return json_response(msgspec.json.encode(schemas.instrument_view(row)))
