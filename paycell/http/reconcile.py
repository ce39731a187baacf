"""The operators' reconciliation API (issue 10). Every handler calls `require_operator` first: a
user's token is answered 403 `forbidden` before anything is read. Errors use the one JSON shape
(paycell/http/errors.py) with stable codes.

    GET  /reconcile/catalogue                    every inconsistency kind and its fix
    GET  /reconcile/runs?kind=&connector=&limit= recent runs' reports, newest first
    GET  /reconcile/runs/{run_id}                a run's report and its breaks (404 not_found)
    POST /reconcile/internal                     run the internal reconciliation now (202: enqueued)
    POST /reconcile/settlements {"connector", "day": "YYYY-MM-DD"}
                                                 fetch and reconcile that day's report (202: enqueued)

Breaks that were queued are resolved through the review API (/reviews/{review_id}/approve|decline
with `action_taken`), like every item of the queue.
"""
from __future__ import annotations

import datetime
import uuid
from typing import Annotated

import msgspec
from aiohttp import web

from paycell.errors import InvalidRequest, NotFound, UnknownConnector
from paycell.http.auth import require_operator
from paycell.http.cursors import check_query_names, limit_of
from paycell.http.errors import json_response
from paycell.http.payments import check_utf8, require_json
from paycell.http.state import ENQUEUE, POOL
from paycell.reconcile import catalogue, report, settlement
from paycell.reconcile.fixes import BREAK_VIEW_MAX
from paycell.store import reconcile as store

PATH = "/reconcile"
_RUNS_QUERY = ("kind", "connector", "limit")


class SettlementIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    connector: Annotated[str, msgspec.Meta(max_length=40)]
    day: datetime.date


class RunList(msgspec.Struct, kw_only=True):
    data: list[report.RunView]


class Enqueued(msgspec.Struct, kw_only=True):
    enqueued: str
    args: list[str]


class CatalogueView(msgspec.Struct, kw_only=True):
    data: list[catalogue.Kind]


STRUCTS = (SettlementIn, RunList, report.RunView, Enqueued, CatalogueView)


def routes() -> list[web.RouteDef]:
    return [
        web.get(PATH + "/catalogue", get_catalogue),
        web.get(PATH + "/runs", list_runs),
        web.get(PATH + "/runs/{run_id}", get_run),
        web.post(PATH + "/internal", run_internal),
        web.post(PATH + "/settlements", run_settlement),
    ]


async def get_catalogue(request: web.Request) -> web.Response:
    require_operator(request)
    return json_response(msgspec.json.encode(CatalogueView(data=list(catalogue.KINDS))))


async def list_runs(request: web.Request) -> web.Response:
    require_operator(request)
    check_query_names(request.query, _RUNS_QUERY)
    kind = request.query.get("kind")
    if kind is not None and kind not in ("internal", "settlement"):
        raise InvalidRequest("kind must be internal or settlement", field="kind")
    async with request.app[POOL].acquire() as conn:
        runs = await store.recent_runs(conn, limit=limit_of(request.query), kind=kind,
                                       connector=request.query.get("connector"))
    return json_response(msgspec.json.encode(RunList(data=[report.run_view(r) for r in runs])))


async def get_run(request: web.Request) -> web.Response:
    require_operator(request)
    async with request.app[POOL].acquire() as conn:
        view = await run_detail(conn, request.match_info["run_id"])
    return json_response(msgspec.json.encode(view))


async def run_detail(conn, run_id: str) -> report.RunView:
    """A run's report with its breaks (the API's and the CLI's `report`); NotFound otherwise."""
    try:
        run_id = str(uuid.UUID(run_id))
    except ValueError:
        raise NotFound("no such reconciliation run") from None
    run = await store.find_run(conn, run_id)
    if run is None:
        raise NotFound("no such reconciliation run")
    return report.run_view(run, await store.breaks_of_run(conn, run.owner_id, run.run_id, limit=BREAK_VIEW_MAX))


async def run_internal(request: web.Request) -> web.Response:
    require_operator(request)
    await request.app[ENQUEUE]("reconcile_internal")
    return json_response(msgspec.json.encode(Enqueued(enqueued="reconcile_internal", args=[])), status=202)


async def run_settlement(request: web.Request) -> web.Response:
    require_operator(request)
    require_json(request)
    raw = await request.read()
    check_utf8(raw)
    try:
        body = msgspec.json.decode(raw, type=SettlementIn)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidRequest(f"invalid body: {str(exc)[:200]}") from None
    if body.connector not in settlement.PARSERS:
        raise UnknownConnector(f"no settlement report format for connector {body.connector!r}")
    args = [body.connector, body.day.isoformat()]
    await request.app[ENQUEUE]("reconcile_settlement", *args)
    return json_response(msgspec.json.encode(Enqueued(enqueued="reconcile_settlement", args=args)), status=202)
