"""The console's front page: payments per minute by status, the breakers and the queues."""
from __future__ import annotations

import asyncio
import datetime

import asyncpg
import structlog
from aiohttp import web

from paycell.console import chart
from paycell.console.pages import render
from paycell.console.state import QUEUES
from paycell.console.views.breakers import breaker_rows
from paycell.http.state import POOL, SETTINGS
from paycell.store import payments

log = structlog.get_logger("paycell.console")


def routes() -> list[web.RouteDef]:
    return [web.get("/", overview, name="console.overview")]


async def overview(request: web.Request) -> web.Response:
    settings = request.config_dict[SETTINGS]
    try:
        async with request.config_dict[POOL].acquire() as conn:
            rows = await payments.counts_per_minute(conn, minutes=chart.MINUTES,
                                                    timeout_ms=settings.console_chart_timeout_ms)
    except asyncpg.QueryCanceledError:
        log.warning("console.chart_timed_out", timeout_ms=settings.console_chart_timeout_ms)
        drawn = None
    else:
        drawn = chart.build(rows, datetime.datetime.now(datetime.timezone.utc))
    stats = await asyncio.to_thread(request.config_dict[QUEUES].stats)
    return render(request, "overview.html", {"chart": drawn, "statuses": chart.STATUSES, "queues": stats,
                                             "chart_timeout_ms": settings.console_chart_timeout_ms,
                                             "breakers": await breaker_rows(request)})
