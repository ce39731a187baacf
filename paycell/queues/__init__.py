"""Inspecting the broker's queues and the dead letters it keeps, on Redis or on RabbitMQ.

Dramatiq has no API to list a queue's depth across brokers, nor to list or replay dead letters,
hence this package: one module per broker (`on_redis`, `on_rabbitmq`) behind the same few calls,
and `open_queues(settings)` picking the one PAYCELL_BROKER_URL selects. Used by `paycell queues`,
`paycell dlq` (paycell/dlq.py), the web's admission sampler and readiness check.
"""
from __future__ import annotations

from typing import Protocol

import dramatiq
import msgspec

from paycell.config import Settings


class QueueStats(msgspec.Struct):
    queue: str
    ready: int
    delayed: int
    dead: int


class DeadLetter(msgspec.Struct):
    broker_id: str        # the broker's own id for it: what `replay` and `forget` take
    queue: str
    actor: str
    order_id: str | None
    error: str
    age_s: int


def listed_id(actor: str, args: list) -> str | None:
    """What a dead letter's listing shows of its arguments: the order id of a payment step's
    message (its last argument, in either form), else the first argument (a connector, a user)."""
    if not args:
        return None
    from paycell.actors.broker import ORDER_STEPS

    shown = args[-1] if actor in ORDER_STEPS else args[0]
    return shown if isinstance(shown, str) else None


class Queues(Protocol):
    name: str  # "redis" | "rabbitmq": the prefix of a dead letter only the broker holds (`redis:<id>`)

    def stats(self) -> list[QueueStats]: ...

    def depth(self, queue: str) -> int:
        """Messages waiting in `queue` that no worker has taken."""

    def dead_letters(self) -> list[DeadLetter]: ...

    def broker_id(self, message: dict) -> str | None:
        """The broker's id of a dead-lettered message as the dead_letter row stored it."""

    def replay(self, broker: dramatiq.Broker, broker_id: str) -> bool:
        """Re-enqueue one dead letter as a fresh message and drop it from the dead-letter queue."""

    def forget(self, broker_id: str) -> bool:
        """Drop one dead letter from the dead-letter queue (replayed by other means)."""

    def ping(self) -> None: ...

    def close(self) -> None: ...


def open_queues(settings: Settings) -> Queues:
    from paycell.actors.broker import is_rabbitmq

    if is_rabbitmq(settings):
        from paycell.queues.on_rabbitmq import RabbitmqQueues
        return RabbitmqQueues(settings)
    from paycell.queues.on_redis import RedisQueues
    return RedisQueues.from_settings(settings)
