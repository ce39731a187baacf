"""Rendering a console page: the template, the signed-in operator and their CSRF token."""
from __future__ import annotations

import datetime
from urllib.parse import quote

import aiohttp_jinja2
import msgspec
from aiohttp import web

from paycell.console.state import CSRF_TOKEN, OPERATOR
from paycell.money import format_amount

# Outcomes a page may announce after a redirect (?done=...): fixed texts, never the query's own.
NOTICES = {
    "replayed": "Dead letter replayed: its order was reopened and its step sent again.",
    "replay_missing": "Nothing replayed: no such dead letter, or it was replayed already.",
    "claimed": "Review item claimed.",
    "approved": "Review item approved: the payment continues.",
    "declined": "Review item declined: the payment fails.",
    "reconcile_enqueued": "Internal reconciliation enqueued: its run appears below once it finishes.",
    "reversal_requested": "Reversal requested: a worker carries it out at the provider; its state is shown below.",
    "reversal_repeated": "This form was sent before: its one reversal is shown below, not made again.",
}


def render(request: web.Request, template: str, context: dict, *, status: int = 200) -> web.Response:
    base = {"operator": request.get(OPERATOR), "csrf": request.get(CSRF_TOKEN),
            "notice": NOTICES.get(request.query.get("done", "")), "path": request.path}
    return aiohttp_jinja2.render_template(template, request, {**base, **context}, status=status)


def when(ts: datetime.datetime | str | None) -> str:
    """A time as operators read it: UTC, to the second."""
    if ts is None:
        return "-"
    if isinstance(ts, str):
        ts = datetime.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return ts.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def pretty_json(value: object) -> str:
    """Event data and evidence as indented JSON text (escaped by the template like any text)."""
    return msgspec.json.format(msgspec.json.encode(value), indent=2).decode()


def path_part(value: str) -> str:
    """A value put into a console URL's path (user ids, review ids, dead letter ids)."""
    return quote(value, safe="")


FILTERS = {"when": when, "pretty_json": pretty_json, "path_part": path_part, "amount": format_amount}


def redirect(location: str) -> web.Response:
    """303 See Other: after a POST, the browser GETs `location` (a console path)."""
    return web.Response(status=303, headers={"Location": location})
