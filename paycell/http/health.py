"""Liveness and readiness, split so that neither can be turned against the stores.

`GET /health` (liveness) does no I/O at all: it says the process serves HTTP, so a flood of it
costs nothing but the request itself. `GET /ready` (readiness) checks that Postgres and Redis
answer, and RabbitMQ when it is the broker (check `broker`), but at most once per
`readiness_cache_s` however many callers ask: concurrent callers
share the one check in flight, later ones the cached result. Both are public (load balancers
and orchestrators carry no user token).
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import msgspec
import structlog
from aiohttp import web

from paycell.errors import NotReady
from paycell.http.errors import json_response

log = structlog.get_logger("paycell.http.health")

Probe = Callable[[], Awaitable[object]]


class ReadyView(msgspec.Struct):
    ok: bool
    checks: dict[str, str]  # store -> "ok" | "unavailable"


class Readiness:
    """The stores' last check result, refreshed at most once per `cache_s`."""

    def __init__(self, probes: dict[str, Probe], *, cache_s: float, timeout_s: float) -> None:
        self._probes = probes
        self._cache_s = cache_s
        self._timeout_s = timeout_s
        self._lock = asyncio.Lock()
        self._checked_at: float | None = None
        self._result: dict[str, str] = {}
        self.checks_run = 0

    async def result(self) -> dict[str, str]:
        async with self._lock:  # callers arriving during a check wait for it rather than start their own
            if self._checked_at is None or time.monotonic() - self._checked_at >= self._cache_s:
                names = list(self._probes)
                outcomes = await asyncio.gather(*(self._probe(n) for n in names))
                self._result = dict(zip(names, outcomes, strict=True))
                self._checked_at = time.monotonic()
                self.checks_run += 1
            return self._result

    async def _probe(self, name: str) -> str:
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._probes[name]()
            return "ok"
        except Exception as exc:  # any failure of a store means "not ready", never a 500
            log.warning("readiness.store_unavailable", store=name, error=repr(exc)[:200])
            return "unavailable"


_ALIVE = msgspec.json.encode({"ok": True})


async def health(request: web.Request) -> web.Response:
    """Public liveness: the process serves HTTP. No I/O."""
    return json_response(_ALIVE)


READINESS = web.AppKey("readiness", Readiness)


async def ready(request: web.Request) -> web.Response:
    """Public readiness: Postgres, Redis (and RabbitMQ when it is the broker) answered a check at most `readiness_cache_s` ago."""
    checks = await request.app[READINESS].result()
    failing = sorted(name for name, outcome in checks.items() if outcome != "ok")
    if failing:
        raise NotReady(f"not ready: {', '.join(failing)} unavailable")
    return json_response(msgspec.json.encode(ReadyView(ok=True, checks=checks)))
