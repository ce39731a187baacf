"""Scheduled payments across users: the next to run, the paused ones (by their user, or by the
clock after repeated failures), and one user's schedules."""
from __future__ import annotations

from aiohttp import web

from paycell.console.pages import render
from paycell.errors import InvalidRequest
from paycell.http.state import POOL
from paycell.refs import USER_ID
from paycell.store import schedules as store

LIST_MAX = 50


def routes() -> list[web.RouteDef]:
    return [web.get("/schedules", schedules, name="console.schedules")]


async def schedules(request: web.Request) -> web.Response:
    user_id = request.query.get("user", "").strip()
    if user_id and not USER_ID.fullmatch(user_id):
        raise InvalidRequest("not a user id", field="user")
    async with request.config_dict[POOL].acquire() as conn:
        if user_id:
            mine = await store.list_recent(conn, user_id, limit=LIST_MAX, before=None)
            sections = [(f"Schedules of {user_id}", mine)]
        else:
            sections = [("Next to run", await store.due_next(conn, limit=LIST_MAX)),
                        ("Paused", await store.paused(conn, limit=LIST_MAX))]
    return render(request, "schedules.html", {"user": user_id, "sections": sections})
