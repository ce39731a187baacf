"""The web process: `create_app(settings)` wires everything explicitly; `main` serves it."""
from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import msgspec
import structlog
from aiohttp import web

from paycell.actors.broker import build_broker, send
from paycell.config import Settings
from paycell.http import openapi, payments
from paycell.http.auth import Authenticator, auth_middleware
from paycell.http.errors import error_middleware, json_response, status_for
from paycell.http.state import ENQUEUE, POOL, REQUEST_ID, SETTINGS, WAITER
from paycell.http.waiter import Waiter
from paycell.store import db
from paycell.store.db import create_pool
from paycell.store.payments import DONE_CHANNEL

log = structlog.get_logger("paycell.http")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_OPENAPI = msgspec.json.encode(openapi.document())
ENQUEUE_THREADS = 4
SHUTDOWN_GRACE_S = 5  # beyond the longest client wait, so waiting clients get their answer


def create_app(settings: Settings) -> web.Application:
    """The API application; its database pool, broker and waiter open and close with it.
    Raises SettingsError when no token could be verified (no JWT secret, no JWKS URL)."""
    authenticator = Authenticator(settings)
    app = web.Application(
        middlewares=[error_middleware, request_log_middleware, auth_middleware(authenticator)],
        client_max_size=settings.http_body_bytes_max,
    )
    app[SETTINGS] = settings
    app.cleanup_ctx.append(authenticator.running)
    app.cleanup_ctx.append(_resources)
    app.on_response_prepare.append(_add_request_id)
    app.router.add_get("/health", health, name="health")
    app.router.add_get("/openapi.json", openapi_json, name="openapi")
    app.router.add_routes(payments.routes())
    return app


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    pool = await create_pool(settings)
    broker = build_broker(settings)
    waiter = Waiter(settings.app_database_url, DONE_CHANNEL)
    # redis-py is blocking: enqueue on a few threads so a slow Redis never stalls the event loop.
    executor = ThreadPoolExecutor(max_workers=ENQUEUE_THREADS, thread_name_prefix="enqueue")

    async def enqueue(step: str, order_id: str) -> None:
        await asyncio.get_running_loop().run_in_executor(executor, send, broker, step, order_id)

    try:
        await waiter.start()
        app[POOL] = pool
        app[ENQUEUE] = enqueue
        app[WAITER] = waiter
        yield
    finally:
        await waiter.close()
        executor.shutdown(wait=True)
        broker.close()
        await pool.close()


async def openapi_json(request: web.Request) -> web.Response:
    """Public: the OpenAPI description, generated from the request and response Structs."""
    return json_response(_OPENAPI)


async def health(request: web.Request) -> web.Response:
    """Public liveness: the database answers."""
    await db.ping(request.app[POOL])
    return json_response(b'{"ok":true}')


@web.middleware
async def request_log_middleware(request: web.Request, handler) -> web.StreamResponse:
    """One log line per request; every line logged while handling it carries its request id."""
    offered = request.headers.get("X-Request-Id", "")
    request_id = offered if _REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    started = time.perf_counter()
    status = 500
    with structlog.contextvars.bound_contextvars(request_id=request_id):
        try:
            response = await handler(request)
            status = response.status
            return response
        except Exception as exc:
            status = status_for(exc)
            raise
        finally:
            log.info("http.request", method=request.method, path=request.path, status=status,
                     duration_ms=round((time.perf_counter() - started) * 1000, 1))
            structlog.contextvars.unbind_contextvars("payment_id")


async def _add_request_id(request: web.Request, response: web.StreamResponse) -> None:
    if REQUEST_ID in request:
        response.headers["X-Request-Id"] = request[REQUEST_ID]


def main(settings: Settings) -> None:
    """Serve the API until SIGINT/SIGTERM (the Procfile's `web`)."""
    web.run_app(create_app(settings), host=settings.http_host, port=settings.http_port,
                access_log=None, shutdown_timeout=settings.prefer_wait_s_max + SHUTDOWN_GRACE_S, print=None)
