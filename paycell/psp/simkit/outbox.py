"""Webhook delivery as providers do it: at least once, retried with backoff while the receiver
fails, plus the misbehaviours a receiver must survive, set through `POST /_sim/webhooks`:
    url            where deliveries go (paycell's `/psp/webhooks/{connector}`)
    duplicate      deliver every event twice
    delay_s        hold every event this long before its first attempt
    out_of_order   hold events until `POST /_sim/webhooks/flush`, then deliver them newest first
    paused         hold events (a provider's delivery backlog) until flushed
The provider's simulator signs each delivery in its own scheme: `headers` is either the signed
headers or a function that signs at each attempt, as providers whose signature carries a
timestamp do (Stripe, PayPal), so a delivery held back or retried is never stale when it leaves.
"""
from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Annotated

import aiohttp
import msgspec
import structlog

log = structlog.get_logger("paycell.psp.simkit.outbox")

ATTEMPTS_MAX = 8
BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 5.0
DELIVERY_TIMEOUT_S = 5.0
LOG_ENTRIES_MAX = 10_000


Headers = dict[str, str] | Callable[[], dict[str, str]]


class OutboxConfig(msgspec.Struct, forbid_unknown_fields=True):
    url: str | None = None
    duplicate: bool = False
    delay_s: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 0.0
    out_of_order: bool = False
    paused: bool = False


class Delivery(msgspec.Struct):
    event_id: str
    type: str
    attempts: int = 0
    status: int | None = None  # the receiver's last HTTP status, None while unanswered
    delivered: bool = False


class Outbox:
    def __init__(self, default_url: str | None = None) -> None:
        self.default_url = default_url
        self.config = OutboxConfig(url=default_url)
        self.held: list[tuple[str, str, Headers, bytes]] = []
        self.log: collections.deque[Delivery] = collections.deque(maxlen=LOG_ENTRIES_MAX)
        self._tasks: set[asyncio.Task] = set()
        self._session: aiohttp.ClientSession | None = None

    def reset(self) -> None:
        self.config = OutboxConfig(url=self.default_url)
        self.held.clear()
        self.log.clear()

    def send(self, event_id: str, type_: str, headers: Headers, body: bytes) -> None:
        """Queue one signed delivery (returns at once; delivery runs in the background)."""
        if self.config.out_of_order or self.config.paused:
            self.held.append((event_id, type_, headers, body))
            return
        self._start(event_id, type_, headers, body)

    def flush(self) -> int:
        """Deliver the held events (newest first when out_of_order is set); returns how many."""
        held, self.held = self.held, []
        if self.config.out_of_order:
            held.reverse()
        for item in held:
            self._start(*item)
        return len(held)

    def _start(self, event_id: str, type_: str, headers: Headers, body: bytes) -> None:
        copies = 2 if self.config.duplicate else 1
        for _ in range(copies):
            delivery = Delivery(event_id=event_id, type=type_)
            self.log.append(delivery)
            task = asyncio.get_running_loop().create_task(self._deliver(delivery, headers, body, self.config))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, delivery: Delivery, headers: Headers, body: bytes, config: OutboxConfig) -> None:
        if config.url is None:
            return
        if config.delay_s:
            await asyncio.sleep(config.delay_s)
        backoff_s = BACKOFF_FIRST_S
        while delivery.attempts < ATTEMPTS_MAX:
            delivery.attempts += 1
            try:
                signed = headers() if callable(headers) else headers
                async with self._client().post(config.url, data=body, headers=signed) as response:
                    delivery.status = response.status
                    await response.read()
                if 200 <= response.status < 300:
                    delivery.delivered = True
                    return
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.info("sim_webhook.unreachable", event_id=delivery.event_id, error=type(exc).__name__)
            await asyncio.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)
        log.warning("sim_webhook.gave_up", event_id=delivery.event_id, attempts=delivery.attempts)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DELIVERY_TIMEOUT_S))
        return self._session

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._session is not None:
            await self._session.close()
