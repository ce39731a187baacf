"""Each connector's circuit breaker as every worker sees it (paycell.psp.breakers, in Redis)."""
from __future__ import annotations

import msgspec
from aiohttp import web

from paycell.console.pages import render
from paycell.console.state import BREAKERS
from paycell.http.state import SETTINGS
from paycell.psp import registry


class BreakerRow(msgspec.Struct, frozen=True):
    connector: str
    state: str          # closed, opened, half-opened
    failures: int       # technical failures in a row
    configured: bool    # its settings are complete (the router skips it otherwise)


def routes() -> list[web.RouteDef]:
    return [web.get("/breakers", breakers, name="console.breakers")]


async def breaker_rows(request: web.Request) -> list[BreakerRow]:
    settings, reader = request.config_dict[SETTINGS], request.config_dict[BREAKERS]
    return [BreakerRow(connector=name, state=await reader.state(name), failures=await reader.failures(name),
                       configured=registry.missing(name, settings) is None)
            for name in registry.all_names(settings)]


async def breakers(request: web.Request) -> web.Response:
    return render(request, "breakers.html", {"breakers": await breaker_rows(request),
                                             "failures_max": request.config_dict[SETTINGS].psp_breaker_failures_max,
                                             "reopen_s": request.config_dict[SETTINGS].psp_breaker_reopen_s})
