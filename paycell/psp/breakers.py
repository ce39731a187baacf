"""Circuit breakers, one per connector, shared by every worker process through Redis (purgatory).

Only technical failures count (PspTransientError: a timeout, a lost connection, a 5xx, an
unreadable answer): a decline is an answer, and so is a refusal (PspRejected), so both count as
the connector working. `psp_breaker_failures_max` failures in a row open the breaker; while open,
a call is refused at once (BreakerOpen) without reaching the provider; `psp_breaker_reopen_s`
after it opened the next calls go through (half-open): a success closes it, a failure opens it
again for another period.

purgatory keeps each breaker as two Redis keys: a JSON state (`state`, `opened_at`) and a
failure counter. Its own repository reads them with two GETs per call; the one here reads both
with one MGET, so a call through a closed breaker costs ONE Redis round trip (a failure one more:
INCR; opening or closing two more: GET + SET of the state; a success after failures one: SET of
the counter to 0). The threshold and the reopen time come from settings on every read (purgatory
would otherwise keep the values the breaker was first registered with).

Concurrency: purgatory updates the state with a GET then a SET, not atomically, and decides to
open from the counter value it read before the call. Two workers can therefore both open (the
second write wins with a later `opened_at`: the breaker stays open a little longer), a success
in one worker can reset the counter while another worker's failure is in flight (the breaker
opens a few failures later than the threshold), and half-open lets every caller of that moment
through, not one probe. None of this can move money twice: a breaker only decides whether paycell
calls a provider now, and every call is idempotent under the order's key; the charge step reads
the order's state under its row lock, never the breaker's, for anything that moves money.
"""
from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import Context, OpenedState
from purgatory.service._async.repository import AsyncRedisRepository
from purgatory.service._async.unit_of_work import AsyncRedisUnitOfWork
import structlog
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from paycell.config import Settings
from paycell.psp.base import PspError, PspTransientError
from paycell.tls import client as tls_client

log = structlog.get_logger("paycell.psp.breakers")
T = TypeVar("T")
KEY_PREFIX = "paycell:breaker:"
REDIS_TIMEOUT_S = 2


class BreakerOpen(PspError):
    """The connector's breaker is open: paycell did not call it (nothing was sent)."""


class _Repository(AsyncRedisRepository):
    """purgatory's Redis repository, reading a breaker in one MGET with the settings' limits."""

    def __init__(self, url: str, threshold: int, ttl_s: float, options: dict) -> None:
        super().__init__(url)
        self.redis = aioredis.from_url(url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S,
                                       **options)
        self.prefix = KEY_PREFIX
        self.threshold, self.ttl_s = threshold, ttl_s

    async def get(self, name: str) -> Context | None:
        data, failures = await self.redis.mget(f"{self.prefix}{name}", f"{self.prefix}{name}::failure_count")
        if not data:
            return None
        stored = json.loads(data)
        return Context(name, self.threshold, self.ttl_s, state=stored.get("state", "closed"),
                       failure_count=int(failures or 0), opened_at=stored.get("opened_at"))


class _UnitOfWork(AsyncRedisUnitOfWork):
    def __init__(self, url: str, threshold: int, ttl_s: float, options: dict) -> None:
        self.contexts = _Repository(url, threshold, ttl_s, options)


def _not_technical(exc: BaseException) -> bool:
    return not isinstance(exc, PspTransientError)


class Breakers:
    """Every connector's breaker, for one process (one event loop: its Redis client is bound to it)."""

    def __init__(self, settings: Settings) -> None:
        self._uow = _UnitOfWork(settings.redis_url, settings.psp_breaker_failures_max, settings.psp_breaker_reopen_s,
                                tls_client.redis_options(settings.redis_url, settings))
        # Anything but a technical failure ends the call as a success would: the provider answered.
        self._factory = AsyncCircuitBreakerFactory(
            default_threshold=settings.psp_breaker_failures_max, default_ttl=settings.psp_breaker_reopen_s,
            exclude=[(BaseException, _not_technical)], uow=self._uow)

    async def call(self, connector: str, fn: Callable[[], Awaitable[T]]) -> T:
        """`fn()` through `connector`'s breaker; BreakerOpen, without calling, while it is open.

        Redis failing before the call propagates (nothing was sent). Once `fn` has run, its
        answer or its error is what the caller gets: a Redis failure while recording it is
        logged, never raised, so a charge the PSP answered is never reported as unknown."""
        breaker = await self._factory.get_breaker(connector)
        try:
            await breaker.__aenter__()
        except OpenedState as exc:
            raise BreakerOpen(f"{connector}: circuit breaker open") from exc
        try:
            result = await fn()
        except BaseException as exc:
            await self._record(connector, breaker, exc)
            raise
        await self._record(connector, breaker, None)
        return result

    @staticmethod
    async def _record(connector: str, breaker, exc: BaseException | None) -> None:
        try:
            await breaker.__aexit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)
        except RedisError:
            log.warning("breaker.not_recorded", connector=connector, failed=exc is not None, exc_info=True)

    async def state(self, connector: str) -> str:
        """"closed", "opened" or "half-opened" as every process sees it now (one Redis round trip).
        An open breaker whose reopen time has passed reads as half-opened: the next call goes through."""
        found = await self._uow.contexts.get(connector)
        if found is None:
            return "closed"
        if found.state == "opened" and found.opened_at is not None and time.time() > found.opened_at + found.ttl:
            return "half-opened"
        return found.state

    async def is_open(self, connector: str) -> bool:
        return await self.state(connector) == "opened"

    async def failures(self, connector: str) -> int:
        found = await self._uow.contexts.get(connector)
        return int(found.failure_count or 0) if found is not None else 0

    async def close(self) -> None:
        await self._uow.contexts.redis.aclose()
