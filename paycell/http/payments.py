"""The payment API handlers: decode, call one function of the domain, encode."""
from __future__ import annotations

import asyncio
import datetime
import re
import uuid

import msgspec
import structlog
from aiohttp import web

from paycell import checkout, schemas
from paycell.errors import InvalidRequest, NotFound
from paycell.http.cursors import check_query_names, decode_cursor, encode_cursor, limit_of
from paycell.http.errors import UnsupportedMediaType, json_response
from paycell.http.client import client_of
from paycell.http.state import ADMISSION, CALLER, CURSOR_KEY, ENQUEUE, LAG, POOL, SETTINGS, VELOCITY, WAITER
from paycell.money import format_amount
from paycell.store import events, payments, wallets

PAYMENTS_PATH = "/payments/payment/v1"
WALLET_PATH = "/payments/wallet/v1"

_WAIT = re.compile(r'wait\s*=\s*(?:([0-9]{1,12})|"([0-9]{1,12})")', re.IGNORECASE)


def routes() -> list[web.RouteDef]:
    return [
        web.post(PAYMENTS_PATH, create_payment),
        web.get(PAYMENTS_PATH, list_payments),
        web.get(PAYMENTS_PATH + "/{payment_id}", get_payment),
        web.get(WALLET_PATH, get_wallet),
    ]


async def create_payment(request: web.Request) -> web.Response:
    """Accept a payment; with `Prefer: wait=N`, hold the answer up to N s for its outcome."""
    settings, pool, waiter = request.app[SETTINGS], request.app[POOL], request.app[WAITER]
    request.app[ADMISSION].check(request.app[LAG].latest)  # before anything is read or written
    require_json(request)
    wait_s = prefer_wait_s(request.headers.getall("Prefer", []), settings.prefer_wait_s_max)
    raw = await request.read()
    check_utf8(raw)
    caller = request[CALLER]
    key = _waiter_key(caller, raw) if wait_s else None
    if key is not None and not waiter.register(key):
        # The waiter is full, or this user already holds their share of it: answer at once rather
        # than queue without bound (the client polls GET instead).
        key, wait_s = None, 0
    try:
        accepted = await checkout.submit(pool, settings, caller, raw, wait_s=wait_s or 0,
                                         enqueue=request.app[ENQUEUE], limits=request.app[VELOCITY],
                                         client=client_of(request, settings))
        structlog.contextvars.bind_contextvars(payment_id=accepted.payment_id)
        status, body = accepted.status, accepted.body
        if wait_s and not accepted.replayed:
            await _wait_until_done(request, key, wait_s)
            status, body = await checkout.finish_wait(pool, caller, accepted.payment_id)
    finally:
        if key is not None:
            waiter.unregister(key)
    headers = {"Location": f"{PAYMENTS_PATH}/{accepted.payment_id}"}
    if accepted.replayed:
        headers["Idempotent-Replayed"] = "true"
    elif wait_s is not None:
        headers["Preference-Applied"] = f"wait={wait_s}"
    return json_response(body, status, headers)


def require_json(request: web.Request) -> None:
    """A body this API reads is JSON: anything else is 415 before a byte of it is read."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType(f"Content-Type must be application/json, not {request.content_type[:80]!r}",
                                   field="Content-Type")


def check_utf8(raw: bytes) -> None:
    # JSON on the wire is UTF-8 (RFC 8259); msgspec raises a bare UnicodeDecodeError on anything else.
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"body is not UTF-8: byte {exc.start} cannot be decoded") from None


def prefer_wait_s(values: list[str], wait_s_max: int) -> int | None:
    """The `wait` preference (RFC 7240) clamped to `wait_s_max`; None when absent.

    Other preferences are ignored, as the RFC asks; a `wait` that is not a non-negative
    integer is an error rather than a silent no-wait.
    """
    for pref in (p.strip() for value in values for p in value.split(",")):
        name = pref.split("=", 1)[0].split(";", 1)[0].strip().lower()
        if name != "wait":
            continue
        match = _WAIT.fullmatch(pref.split(";", 1)[0].strip())
        if match is None:
            raise InvalidRequest(f"Prefer: {pref[:80]!r} is malformed; expected wait=<seconds>", field="Prefer")
        return min(int(match[1] or match[2]), wait_s_max)
    return None


def _waiter_key(caller: str, raw: bytes) -> tuple[str, str] | None:
    # The key must be listened for before `submit` can enqueue the payment; a body that does not
    # name a valid payment_id cannot be accepted, and submit says why.
    try:
        payment_id = str(uuid.UUID(checkout.decode(raw).payment_id))
    except (InvalidRequest, ValueError):
        return None
    return caller, payment_id


async def _wait_until_done(request: web.Request, key: tuple[str, str] | None, wait_s: int) -> None:
    if key is None:
        return
    waiter, pool = request.app[WAITER], request.app[POOL]
    deadline = asyncio.get_running_loop().time() + wait_s
    while (remaining_s := deadline - asyncio.get_running_loop().time()) > 0:
        if not await waiter.wait(key, remaining_s):
            return
        async with pool.acquire() as conn:
            if await payments.status_of(conn, *key) != "processing":
                return


async def get_payment(request: web.Request) -> web.Response:
    """The caller's payment with its orders and event history; 404 for anything else."""
    caller, pool = request[CALLER], request.app[POOL]
    try:
        payment_id = str(uuid.UUID(request.match_info["payment_id"]))
    except ValueError:
        raise NotFound("no such payment") from None
    structlog.contextvars.bind_contextvars(payment_id=payment_id)
    async with pool.acquire() as conn:
        found = await payments.get(conn, caller, payment_id)
        if found is None:
            raise NotFound("no such payment")
        history = await events.for_payment(conn, caller, payment_id)
    req, orders = found
    return json_response(msgspec.json.encode(schemas.payment_view(req, orders, history)))


class _ListQuery(msgspec.Struct, frozen=True):
    limit: int
    before: tuple[datetime.datetime, str] | None


async def list_payments(request: web.Request) -> web.Response:
    """The caller's payments, newest first, a page at a time (`limit`, `starting_after`)."""
    caller, pool = request[CALLER], request.app[POOL]
    query = _list_query(request)
    async with pool.acquire() as conn:
        rows = await payments.list_recent(conn, caller, limit=query.limit + 1, before=query.before)
        page = rows[:query.limit]
        orders = await payments.orders_for(conn, caller, [row["payment_id"] for row in page])
    views = [schemas.payment_view(row, orders[row["payment_id"]]) for row in page]
    has_more = len(rows) > query.limit
    cursor = (encode_cursor(request.app[CURSOR_KEY], caller, page[-1]["created_at"],
                            page[-1]["payment_id"]) if has_more else None)
    return json_response(msgspec.json.encode(schemas.PaymentList(data=views, has_more=has_more, next_cursor=cursor)))


def _list_query(request: web.Request) -> _ListQuery:
    check_query_names(request.query, ("limit", "starting_after"))
    limit = limit_of(request.query)
    cursor = request.query.get("starting_after")
    if cursor is None:
        return _ListQuery(limit, None)
    key = request.app[CURSOR_KEY]
    return _ListQuery(limit, decode_cursor(key, request[CALLER], cursor))


async def get_wallet(request: web.Request) -> web.Response:
    """The caller's wallet: available and reserved balance per currency, as decimal strings."""
    caller = request[CALLER]
    balances = await wallets.balances(request.app[POOL], caller)
    view = schemas.WalletView(
        user_id=caller, account=f"wallet:{caller}",
        balances=[schemas.BalanceView(currency=b.currency, available=format_amount(b.available_minor, b.currency),
                                      reserved=format_amount(b.reserved_minor, b.currency)) for b in balances])
    return json_response(msgspec.json.encode(view))
