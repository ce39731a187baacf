"""The web process: `create_app(settings)` wires everything explicitly; `main` serves it."""
from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import msgspec
import redis.asyncio
import structlog
from aiohttp import web

from paycell.actors.broker import build_broker, is_rabbitmq, send
from paycell.config import Settings
from paycell.console.app import PREFIX as CONSOLE_PREFIX
from paycell.console.app import create_console
from paycell.http import (instruments, openapi, payments, reconcile, returns, reversals, reviews, risk_rules, schedules,
                          webhooks)
from paycell.http.auth import Authenticator, auth_middleware, require_operator
from paycell.http.edge import (body_deadline_middleware, concurrency_middleware, edge_headers,
                               hide_server_software, server_options)
from paycell.http.cursors import cursor_key
from paycell.http.errors import error_middleware, json_response, status_for
from paycell.http.health import READINESS, Readiness, health, ready
from paycell.admission.gate import Gate, lag_bound_ms
from paycell.admission.lag import LagSampler
from paycell.http.state import (ADMISSION, CLIENT_REQUEST_ID, CURSOR_KEY, ENQUEUE, LAG, METRICS, POOL, REQUEST_ID,
                                SETTINGS, VELOCITY, WAITER)
from paycell.metrics.web import CONTENT_TYPE as METRICS_CONTENT_TYPE
from paycell.metrics.system import SystemMetrics
from paycell.metrics.web import WebMetrics
from paycell.http.users import register_middleware
from paycell.http.waiter import Waiter
from paycell.store import db
from paycell.store.db import create_pool
from paycell.store.payments import DONE_CHANNEL
from paycell.tls import client as tls_client
from paycell.tls import server as tls_server
from paycell.velocity import Velocity

log = structlog.get_logger("paycell.http")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_OPENAPI = msgspec.json.encode(openapi.document())
ENQUEUE_THREADS = 4
# How long a stopping web process lets requests in flight finish (clients waiting with `Prefer:
# wait` are answered at once: _release_waiters); SIGTERM to exit stays within 10 s.
SHUTDOWN_GRACE_S = 5


def create_app(settings: Settings) -> web.Application:
    """The API application; its database pool, broker and waiter open and close with it.
    Raises SettingsError when no token could be verified (no JWT secret, no JWKS URL)."""
    authenticator = Authenticator(settings)
    app = web.Application(
        middlewares=[error_middleware, request_log_middleware, concurrency_middleware(settings),
                     auth_middleware(authenticator), register_middleware(settings),
                     webhooks.body_cap_middleware(settings), risk_rules.body_cap_middleware(),
                     body_deadline_middleware(settings)],
        client_max_size=settings.http_body_bytes_max,
    )
    app[SETTINGS] = settings
    app[CURSOR_KEY] = cursor_key(settings.jwt_secret)
    app[METRICS] = WebMetrics(lambda: app[LAG].latest if LAG in app else None,
                              lambda: app[ADMISSION].refused if ADMISSION in app else 0,
                              SystemMetrics(settings))
    app.cleanup_ctx.append(authenticator.running)
    app.cleanup_ctx.append(_resources)
    app.on_shutdown.append(_release_waiters)
    app.on_response_prepare.append(_add_request_id)
    app.on_response_prepare.append(edge_headers)
    app.router.add_get("/health", health, name="health")
    app.router.add_get("/ready", ready, name="ready")
    app.router.add_get("/openapi.json", openapi_json, name="openapi")
    app.router.add_get("/metrics", metrics, name="metrics")
    app.router.add_routes(payments.routes())
    app.router.add_routes(instruments.routes())
    app.router.add_routes(schedules.routes())
    app.router.add_routes(returns.routes())
    app.router.add_routes(risk_rules.routes())
    app.router.add_routes(reviews.routes())
    app.router.add_routes(reconcile.routes())
    app.router.add_routes(reversals.routes())
    webhooks.install(app, settings)
    app.router.add_get(CONSOLE_PREFIX, console_root, name="console_root")  # before the sub-app's prefix
    app.add_subapp(CONSOLE_PREFIX, create_console(settings, authenticator))  # its own sign-in (paycell/console)
    return app


async def _release_waiters(app: web.Application) -> None:
    """Stopping (SIGTERM): clients waiting for their payment get it as it stands (202) now,
    instead of holding the shutdown for up to their whole wait."""
    if WAITER in app:
        app[WAITER].release_all()


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    pool = await create_pool(settings, acquire_timeout_s=settings.db_acquire_timeout_s)
    broker = build_broker(settings)
    redis_tls = tls_client.redis_options(settings.redis_url, settings)
    ready_redis = redis.asyncio.Redis.from_url(settings.redis_url, socket_timeout=settings.readiness_check_timeout_s,
                                               socket_connect_timeout=settings.readiness_check_timeout_s, **redis_tls)
    waiter = Waiter(settings.app_database_url, DONE_CHANNEL, waiters_max=settings.prefer_waiters_max,
                    waiters_per_user_max=settings.prefer_wait_per_user_max)
    limits = Velocity(settings)
    lag = LagSampler(settings, interval_ms=settings.admission_check_interval_ms,
                     timeout_s=settings.readiness_check_timeout_s)
    # redis-py and pika are blocking: enqueue on a few threads so a slow broker never stalls the event loop.
    executor = ThreadPoolExecutor(max_workers=ENQUEUE_THREADS, thread_name_prefix="enqueue")

    async def enqueue(step: str, *ids: str) -> None:
        await asyncio.get_running_loop().run_in_executor(executor, send, broker, step, *ids)

    try:
        await waiter.start()
        await lag.start()
        app[POOL] = pool
        app[LAG] = lag
        # A reading older than a few intervals (Redis not answering) refuses nothing.
        app[ADMISSION] = Gate(lag_ms_max=lag_bound_ms(settings.admission_ttc_ms_max), depth_max=settings.admission_queue_depth_max,
                              stale_ms=5 * settings.admission_check_interval_ms + 1_000)
        app[ENQUEUE] = enqueue
        app[WAITER] = waiter
        probes = {"database": lambda: db.ping(pool), "redis": ready_redis.ping}
        if is_rabbitmq(settings):  # the messages live there; Redis still holds breakers and rate limits
            probes["broker"] = lag.ping_broker
        app[READINESS] = Readiness(probes,
                                   cache_s=settings.readiness_cache_s, timeout_s=settings.readiness_check_timeout_s)
        app[VELOCITY] = limits
        yield
    finally:
        await ready_redis.aclose()
        await app[METRICS].close()
        await lag.close()
        await waiter.close()
        await limits.close()
        executor.shutdown(wait=True)
        broker.close()
        await pool.close()


async def console_root(request: web.Request) -> web.Response:
    """Public: the console's bare path sends the browser to its front page (which asks for a sign-in)."""
    return web.Response(status=308, headers={"Location": CONSOLE_PREFIX + "/"})


async def metrics(request: web.Request) -> web.Response:
    """Operators (a Prometheus scrape with an operator token): this process's metrics."""
    require_operator(request)
    await request.app[METRICS].refresh(request.app[POOL])
    return web.Response(body=request.app[METRICS].exposition(), headers={"Content-Type": METRICS_CONTENT_TYPE})


async def openapi_json(request: web.Request) -> web.Response:
    """Public: the OpenAPI description, generated from the request and response Structs."""
    return json_response(_OPENAPI)


@web.middleware
async def request_log_middleware(request: web.Request, handler) -> web.StreamResponse:
    """One log line per request; every line logged while handling it carries its request id.

    The id is always ours: a client's X-Request-Id could collide with another request's or be
    chosen to confuse an operator reading the logs. A well-formed one is kept apart, logged as
    `client_request_id` and echoed in X-Client-Request-Id, so a client can still correlate."""
    request_id = uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    offered = request.headers.get("X-Request-Id", "")
    client_request_id = offered if _REQUEST_ID.fullmatch(offered) else None
    context = {"request_id": request_id}
    if client_request_id is not None:
        request[CLIENT_REQUEST_ID] = context["client_request_id"] = client_request_id
    started = time.perf_counter()
    status = 500
    with structlog.contextvars.bound_contextvars(**context):
        try:
            response = await handler(request)
            status = response.status
            return response
        except Exception as exc:
            status = status_for(exc)
            raise
        finally:
            duration_s = time.perf_counter() - started
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "unmatched"
            request.app[METRICS].observe(route, request.method, status, duration_s)
            log.info("http.request", method=request.method, path=request.path, status=status,
                     duration_ms=round(duration_s * 1000, 1))
            structlog.contextvars.unbind_contextvars("payment_id")


async def _add_request_id(request: web.Request, response: web.StreamResponse) -> None:
    if REQUEST_ID in request:
        response.headers["X-Request-Id"] = request[REQUEST_ID]
    if CLIENT_REQUEST_ID in request:
        response.headers["X-Client-Request-Id"] = request[CLIENT_REQUEST_ID]


def main(settings: Settings) -> None:
    """Serve the API until SIGINT/SIGTERM (the Procfile's `web`): HTTPS when a certificate is
    configured (paycell.tls.server), else plain HTTP (production allows that only behind a TLS proxy)."""
    hide_server_software()
    ssl_context = tls_server.from_settings(settings)
    log.info("http.serving", host=settings.http_host, port=settings.http_port,
             scheme="https" if ssl_context else "http", behind_proxy=settings.tls_behind_proxy)
    web.run_app(create_app(settings), host=settings.http_host, port=settings.http_port,
                access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S, print=None, ssl_context=ssl_context,
                reuse_port=settings.http_reuse_port or None,
                **server_options(settings))
