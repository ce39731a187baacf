"""The console sub-application: its templates, stylesheet, middlewares and routes, and the
resources it needs besides its parent's pool, settings and enqueue (a Redis client for the
queues and dead letters, a broker to replay them, the breakers' reader)."""
from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from paycell.actors.broker import build_broker
from paycell.config import Settings
from paycell.console import guard, headers, pages
from paycell.console.state import AUTHENTICATOR, BREAKERS, BROKER, QUEUES
from paycell.console.views import breakers, overview, payments, queues, reconcile, reviews, schedules, sign_in
from paycell.http.auth import Authenticator
from paycell.http.state import OWN_AUTH, SETTINGS
from paycell.psp.breakers import Breakers
from paycell.queues import open_queues

PREFIX = "/console"
STATIC_DIR = Path(__file__).parent / "static"


def create_console(settings: Settings, authenticator: Authenticator) -> web.Application:
    """The console, for `app.add_subapp(PREFIX, ...)`; `authenticator` is the API's own."""
    app = web.Application(middlewares=[headers.error_pages, guard.require_session, guard.require_csrf_token])
    app[OWN_AUTH] = True
    # The parent's on_response_prepare hooks run with this sub-app as `request.app` on console
    # answers; those that read the settings from it (edge headers) find the same object here.
    app[SETTINGS] = settings
    app[AUTHENTICATOR] = authenticator
    aiohttp_jinja2.setup(app, loader=jinja2.PackageLoader("paycell.console", "templates"), autoescape=True,
                         undefined=jinja2.StrictUndefined, filters=pages.FILTERS, default_helpers=False)
    app.on_response_prepare.append(headers.security_headers)
    app.cleanup_ctx.append(_resources(settings))
    app.router.add_static("/static", STATIC_DIR, name="console.static", append_version=False)
    for module in (sign_in, overview, payments, queues, reviews, schedules, reconcile, breakers):
        app.router.add_routes(module.routes())
    app.router.add_route("*", "/{tail:.*}", not_found, name="console.not_found")
    return app


def _resources(settings: Settings):
    async def resources(app: web.Application) -> AsyncIterator[None]:
        queues = open_queues(settings)
        broker = build_broker(settings)
        breaker_reader = Breakers(settings)
        app[QUEUES], app[BROKER], app[BREAKERS] = queues, broker, breaker_reader
        try:
            yield
        finally:
            await breaker_reader.close()
            broker.close()
            queues.close()
    return resources


async def not_found(request: web.Request) -> web.Response:
    return headers.error_page(request, 404, "route_not_found", f"no console page at {request.path[:200]}")
