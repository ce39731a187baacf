"""The queues' depths and the dead letters, with replay (paycell.queues and paycell.dlq: what
`paycell queues`, `paycell dlq list` and `paycell dlq replay` call)."""
from __future__ import annotations

import asyncio

import structlog
from aiohttp import web

from paycell import dlq
from paycell.console.pages import redirect, render
from paycell.console.state import BROKER, OPERATOR, QUEUES
from paycell.http.state import POOL, SETTINGS

log = structlog.get_logger("paycell.console")
IDENT_CHARS_MAX = 100


def routes() -> list[web.RouteDef]:
    return [
        web.get("/queues", queues_page, name="console.queues"),
        web.post("/dead-letters/{ident}/replay", replay, name="console.replay"),
    ]


async def queues_page(request: web.Request) -> web.Response:
    queues = request.config_dict[QUEUES]
    stats = await asyncio.to_thread(queues.stats)
    dead = await dlq.list_all(request.config_dict[POOL], queues)
    return render(request, "queues.html", {"queues": stats, "dead_letters": dead, "broker": queues.name})


async def replay(request: web.Request) -> web.Response:
    ident = request.match_info["ident"]
    config = request.config_dict
    done = False
    if len(ident) <= IDENT_CHARS_MAX:
        done = await dlq.replay(config[POOL], config[QUEUES], config[BROKER], config[SETTINGS], ident,
                                by=request[OPERATOR])
    log.info("console.dead_letter_replayed" if done else "console.dead_letter_not_replayed", dead_letter=ident,
             operator=request[OPERATOR])
    return redirect(f"/console/queues?done={'replayed' if done else 'replay_missing'}")
