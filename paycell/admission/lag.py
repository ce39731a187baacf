"""How far behind the payment pipeline is: the payments queue's depth and the age of its oldest
message, read from the broker.

On Redis:

Dramatiq's Redis broker RPUSHes a message id onto `dramatiq:<queue>` and its workers LPOP from
the head, keeping bodies in the hash `dramatiq:<queue>.msgs`; so the head is the oldest message
no worker has taken yet, and its body carries `message_timestamp` (ms since the epoch, set when it
was enqueued). Messages a worker has prefetched are no longer in the list: the figure is the
backlog nobody is working on, which is what grows without bound under overload.

On RabbitMQ (PAYCELL_BROKER_URL=amqp://...) the depth is a passive queue_declare's message count
(the ready messages: prefetched ones are not counted, as on Redis). The oldest message's age is
not readable there without taking the head of the queue away from the workers (AMQP has no peek,
and paycell does not require the management plugin), so the reading carries the depth only
(`oldest_age_known` False): the gate then refuses on PAYCELL_ADMISSION_QUEUE_DEPTH_MAX alone, and
GET /metrics leaves the age gauge out rather than report a 0 it did not read.

`LagSampler` reads every `interval_ms` on a task of its own (one pipelined round trip), so the
request path only reads two numbers in memory. When Redis does not answer, the last reading ages
out after `stale_ms` and the gate stops refusing on it: admission control must never be the
reason payments stop when the pipeline itself may be fine (enqueueing fails on its own then).
"""
from __future__ import annotations

import asyncio
import contextlib
import time

import msgspec
import redis.asyncio
import structlog

from paycell.actors.broker import PAYMENTS_QUEUE, is_rabbitmq
from paycell.config import Settings
from paycell.queues.on_redis import NAMESPACE
from paycell.tls import client as tls_client

log = structlog.get_logger("paycell.admission")


class Lag(msgspec.Struct, frozen=True):
    depth: int            # messages waiting in the payments queue
    oldest_age_ms: int    # the age of the oldest of them; 0 when the queue is empty or the age is unknown
    read_at_s: float      # time.monotonic() of the reading
    oldest_age_known: bool = True  # False on RabbitMQ: depth only


class _Body(msgspec.Struct):
    message_timestamp: int


async def read_lag(client: redis.asyncio.Redis, queue: str = PAYMENTS_QUEUE) -> Lag:
    key = f"{NAMESPACE}:{queue}"
    async with client.pipeline(transaction=False) as pipe:
        pipe.llen(key)
        pipe.lindex(key, 0)
        depth, head = await pipe.execute()
    oldest_age_ms = 0
    if head is not None:
        raw = await client.hget(f"{key}.msgs", head)
        if raw is not None:  # taken meanwhile: the queue moved on
            enqueued_ms = msgspec.json.decode(raw, type=_Body).message_timestamp
            oldest_age_ms = max(0, int(time.time() * 1000) - enqueued_ms)
    return Lag(depth=depth, oldest_age_ms=oldest_age_ms, read_at_s=time.monotonic())


class _RedisSource:
    errors = (redis.exceptions.RedisError, OSError, msgspec.DecodeError)

    def __init__(self, settings: Settings, timeout_s: float):
        options = tls_client.redis_options(settings.redis_url, settings)
        self._client = redis.asyncio.Redis.from_url(settings.redis_url, **options, socket_timeout=timeout_s,
                                                    socket_connect_timeout=timeout_s)

    async def read(self) -> Lag:
        return await read_lag(self._client)

    async def ping(self) -> None:
        await self._client.ping()

    async def aclose(self) -> None:
        await self._client.aclose()


class _RabbitmqSource:
    """Depth only, read on a thread (pika's connection is blocking) over one kept connection."""

    def __init__(self, settings: Settings):
        from paycell.queues.on_rabbitmq import RabbitmqQueues
        self._queues = RabbitmqQueues(settings)
        self.errors = RabbitmqQueues.errors

    async def read(self) -> Lag:
        depth = await asyncio.to_thread(self._queues.depth, PAYMENTS_QUEUE)
        return Lag(depth=depth, oldest_age_ms=0, read_at_s=time.monotonic(), oldest_age_known=False)

    async def ping(self) -> None:
        await asyncio.to_thread(self._queues.ping)

    async def aclose(self) -> None:
        await asyncio.to_thread(self._queues.close)


class LagSampler:
    def __init__(self, settings: Settings, *, interval_ms: int, timeout_s: float):
        """Reads the broker PAYCELL_BROKER_URL selects, with `timeout_s` on every round trip."""
        self._source = _RabbitmqSource(settings) if is_rabbitmq(settings) else _RedisSource(settings, timeout_s)
        self._interval_s = interval_ms / 1000
        self._task: asyncio.Task | None = None
        self._stop = asyncio.Event()
        self.latest: Lag | None = None

    async def ping_broker(self) -> None:
        """The readiness check's probe of the broker."""
        await self._source.ping()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="paycell-admission-lag")

    async def close(self) -> None:
        # Stop between readings rather than cancel one mid-command (redis-py's asyncio client can
        # hang closing a connection whose command was cancelled); a reading ends within the
        # socket timeout.
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        await self._source.aclose()

    async def sample(self) -> Lag:
        self.latest = await self._source.read()
        return self.latest

    async def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                await self.sample()
                failing = False
            except self._source.errors as exc:
                if not failing:
                    log.warning("admission.lag_unreadable", error=str(exc))
                failing = True
            with contextlib.suppress(TimeoutError):  # the interval passed without a stop: read again
                await asyncio.wait_for(self._stop.wait(), self._interval_s)
