"""The web process's own limits against slow and abusive clients, and the headers every answer
carries. Each limit is a setting with its unit in the name (TIGER_STYLE: a limit on everything).

- A body must arrive within `http_body_read_timeout_s` (408): aiohttp reads a body as slowly
  as the client sends it, so a client trickling one byte a second would hold a handler forever.
  Headers are bounded by aiohttp's keep-alive timer (`server_options`): it runs from the moment a
  connection is idle or new until a whole request head has arrived, and closes the connection.
- At most `http_concurrent_requests_max` requests are handled at once (503 + Retry-After): past
  that a process only queues work it cannot finish in time. Liveness is exempt so that a busy
  process is not mistaken for a dead one.
- Answers never name the server software, and answers of authenticated routes are never stored
  by a cache (`Cache-Control: no-store`): they hold one user's money.
- Answers over https (served here, or by a TLS proxy declared with PAYCELL_TLS_BEHIND_PROXY)
  carry Strict-Transport-Security, so a browser never tries plain http again.
"""
from __future__ import annotations

import asyncio

from aiohttp import web, web_response

from paycell.config import Settings
from paycell.errors import Overloaded, RequestTimeout
from paycell.http.auth import PUBLIC_ROUTES
from paycell.http.state import SETTINGS

UNCAPPED_ROUTES = frozenset({"health"})  # liveness must answer even when the process is saturated


def hide_server_software() -> None:
    """Answers the app prepares lose aiohttp's `Server: Python/x aiohttp/y` in `edge_headers`, but
    the protocol's own answers to requests it cannot parse never reach the app: their header
    comes from this module-level default, which only the web process's `main` replaces."""
    web_response.SERVER_SOFTWARE = "paycell"


def server_options(settings: Settings) -> dict:
    """Keyword arguments for aiohttp's runner (web.run_app, web.AppRunner, tests' servers)."""
    return {"keepalive_timeout": settings.http_keepalive_timeout_s}


def concurrency_middleware(settings: Settings):
    in_flight = 0
    cap = settings.http_concurrent_requests_max

    @web.middleware
    async def middleware(request: web.Request, handler) -> web.StreamResponse:
        nonlocal in_flight
        route = request.match_info.route
        if route.name in UNCAPPED_ROUTES:
            return await handler(request)
        if in_flight >= cap:
            raise Overloaded(f"this server is handling {cap} requests already; retry shortly")
        in_flight += 1
        try:
            return await handler(request)
        finally:
            in_flight -= 1
    return middleware


def body_deadline_middleware(settings: Settings):
    timeout_s = settings.http_body_read_timeout_s

    @web.middleware
    async def middleware(request: web.Request, handler) -> web.StreamResponse:
        # A body that has arrived whole (the usual small JSON body, in the headers' packet) cannot
        # be late: its read needs no timer (measured ~2 % of the web's CPU per payment).
        if request.body_exists and not request.content.is_eof():
            # request.read() keeps the body: the handler's own read() returns it without waiting.
            try:
                async with asyncio.timeout(timeout_s):
                    await request.read()
            except TimeoutError:
                raise RequestTimeout(f"the request body did not arrive within {timeout_s:g} s") from None
        return await handler(request)
    return middleware


async def edge_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: runs after aiohttp set its default headers, before they are sent."""
    response.headers.popall("Server", None)
    route = request.match_info.route
    if route.name not in PUBLIC_ROUTES:
        response.headers["Cache-Control"] = "no-store"
    settings = request.config_dict[SETTINGS]
    if settings.tls_hsts_max_age_s and (request.secure or settings.tls_behind_proxy):
        # Browsers heed it only on an https answer: served here, or passed on by the TLS proxy.
        response.headers["Strict-Transport-Security"] = f"max-age={settings.tls_hsts_max_age_s}"
