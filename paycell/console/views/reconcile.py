"""Reconciliation runs and their breaks (paycell.reconcile: the reports the API serves), and
running the internal reconciliation now."""
from __future__ import annotations

import structlog
from aiohttp import web

from paycell.console.pages import path_part, redirect, render
from paycell.console.state import OPERATOR
from paycell.http.reconcile import run_detail
from paycell.http.state import ENQUEUE, POOL
from paycell.reconcile import report
from paycell.store import reconcile as store

log = structlog.get_logger("paycell.console")
LIST_MAX = 50


def routes() -> list[web.RouteDef]:
    return [
        web.get("/reconciliation", runs, name="console.reconciliation"),
        web.get("/reconciliation/{run_id}", run, name="console.reconciliation_run"),
        web.post("/reconciliation/internal", run_internal, name="console.reconciliation_internal"),
    ]


def run_path(run_id: str) -> str:
    return f"/console/reconciliation/{path_part(run_id)}"


async def runs(request: web.Request) -> web.Response:
    async with request.config_dict[POOL].acquire() as conn:
        found = await store.recent_runs(conn, limit=LIST_MAX)
    return render(request, "reconciliation.html", {"runs": [report.run_view(r) for r in found], "run_path": run_path})


async def run(request: web.Request) -> web.Response:
    async with request.config_dict[POOL].acquire() as conn:
        view = await run_detail(conn, request.match_info["run_id"])
    return render(request, "reconciliation_run.html", {"run": view})


async def run_internal(request: web.Request) -> web.Response:
    await request.config_dict[ENQUEUE]("reconcile_internal")
    log.info("console.reconcile_internal_enqueued", operator=request[OPERATOR])
    return redirect("/console/reconciliation?done=reconcile_enqueued")
