"""Dramatiq's queues and dead letters on RabbitMQ, read over AMQP (no management plugin needed).

Dramatiq's RabbitMQ broker declares, per queue, `<queue>` (durable, dead-lettering to
`<queue>.XQ`), `<queue>.DQ` (delayed: retries wait there, same dead-letter target) and `<queue>.XQ`
(dead letters, kept DEAD_MESSAGE_TTL). A passive `queue_declare` answers a queue's ready count
without touching its messages: that is `depth` and `stats` (messages a worker has prefetched and
not yet acknowledged are not counted, as on Redis). AMQP cannot list queues, so `stats` covers
paycell's own (STEP_QUEUES).

AMQP cannot read a message without taking it either. Dead letters are listed by taking every
message of the `.XQ` queues unacknowledged on a channel of our own and closing the channel, which
puts them all back (nothing consumes `.XQ`, so nobody else sees the gap); `replay` and `forget`
acknowledge only the one they name. Their age is RabbitMQ's own `x-death` time, their error the
traceback Dramatiq wrote into the message when it has one (Dramatiq's RabbitMQ broker dead-letters
the body as it was delivered, so usually none: the dead_letter row in Postgres has it).

The oldest waiting message's age, which the admission gate reads on Redis, is not readable here
without taking the head of the live payments queue from the workers: on RabbitMQ admission reads
the depth only (paycell/admission/lag.py, README "Brokers").
"""
from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Iterator

import dramatiq
import msgspec
import pika
import pika.exceptions

from paycell.actors.broker import STEP_QUEUES, rabbitmq_parameters
from paycell.config import Settings
from paycell.queues import DeadLetter, QueueStats, listed_id

DEAD_LETTERS_SCAN_MAX = 10_000  # a bound on one listing; past it the oldest are shown


class RabbitmqQueues:
    name = "rabbitmq"
    errors = (pika.exceptions.AMQPError, OSError)

    def __init__(self, settings: Settings):
        self._parameters = pika.ConnectionParameters(**rabbitmq_parameters(settings))
        self._connection: pika.BlockingConnection | None = None
        self._lock = threading.Lock()  # one connection, used from one thread at a time

    def _channel(self):
        if self._connection is None or not self._connection.is_open:
            self._connection = pika.BlockingConnection(self._parameters)
        return self._connection.channel()

    def _with_connection(self, work):
        """Run `work` under the lock; a broken connection is dropped, so the next call opens another.
        `work` must not take the lock itself (_passive_count and _dead_queues do not)."""
        with self._lock:
            try:
                return work()
            except (pika.exceptions.AMQPConnectionError, OSError):
                self._drop_connection()
                raise

    def _with_channel(self, work):
        """Run `work(channel, dead-letter queues)` on a channel of its own, closed afterwards, which
        puts every message it took unacknowledged back in its queue."""
        def on_channel():
            queues = self._dead_queues()
            channel = self._channel()
            try:
                return work(channel, queues)
            finally:
                if channel.is_open:
                    channel.close()
        return self._with_connection(on_channel)

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except (pika.exceptions.AMQPError, OSError):
                pass  # already broken: nothing left to close cleanly

    def _count(self, name: str) -> int:
        return self._with_connection(lambda: self._passive_count(name) or 0)

    def _passive_count(self, name: str) -> int | None:
        """The ready count of `name`, or None when it was never declared (a 404 closes the channel
        it was asked on, hence a channel of its own). Call under the lock."""
        channel = self._channel()
        try:
            return channel.queue_declare(queue=name, passive=True).method.message_count
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                return None
            raise
        finally:
            if channel.is_open:
                channel.close()

    def _dead_queues(self) -> list[str]:
        """paycell's queues whose dead-letter queue exists. Call under the lock."""
        return [q for q in sorted(set(STEP_QUEUES.values())) if self._passive_count(f"{q}.XQ") is not None]

    def stats(self) -> list[QueueStats]:
        return [QueueStats(q, self._count(q), self._count(f"{q}.DQ"), self._count(f"{q}.XQ"))
                for q in sorted(set(STEP_QUEUES.values()))]

    def depth(self, queue: str) -> int:
        return self._count(queue)

    def dead_letters(self) -> list[DeadLetter]:
        def listing(channel, queues) -> list[DeadLetter]:
            return [_dead_letter(queue, properties, body) for queue, _, properties, body in _taken(channel, queues)]
        return self._with_channel(listing)

    def broker_id(self, message: dict) -> str | None:
        return message.get("message_id")

    def replay(self, broker: dramatiq.Broker, broker_id: str) -> bool:
        def replay_one(channel, queues) -> bool:
            for queue, tag, _, body in _taken(channel, queues, stop_at=broker_id):
                msg = msgspec.json.decode(body)
                broker.enqueue(dramatiq.Message(queue_name=queue, actor_name=msg["actor_name"],
                                                args=tuple(msg.get("args") or ()), kwargs=msg.get("kwargs") or {},
                                                options={}))
                channel.basic_ack(tag)  # only once the fresh message is confirmed
                return True
            return False
        return self._with_channel(replay_one)

    def forget(self, broker_id: str) -> bool:
        def forget_one(channel, queues) -> bool:
            for _, tag, _, _ in _taken(channel, queues, stop_at=broker_id):
                channel.basic_ack(tag)
                return True
            return False
        return self._with_channel(forget_one)

    def ping(self) -> None:
        self._with_connection(lambda: self._channel().close())

    def close(self) -> None:
        with self._lock:
            self._drop_connection()


def _taken(channel, queues: list[str], *, stop_at: str | None = None
           ) -> Iterator[tuple[str, int, pika.BasicProperties, bytes]]:
    """Take the dead letters of `queues` unacknowledged (queue, delivery tag, properties, body);
    with `stop_at`, yield only the one whose Dramatiq message id it is."""
    taken = 0
    for queue in queues:
        while taken < DEAD_LETTERS_SCAN_MAX:
            method, properties, body = channel.basic_get(f"{queue}.XQ", auto_ack=False)
            if method is None:
                break
            taken += 1
            if stop_at is None:
                yield queue, method.delivery_tag, properties, body
            elif msgspec.json.decode(body).get("message_id") == stop_at:
                yield queue, method.delivery_tag, properties, body
                return


def _dead_letter(queue: str, properties: pika.BasicProperties, body: bytes) -> DeadLetter:
    msg = msgspec.json.decode(body)
    args = msg.get("args") or []
    trace = (msg.get("options") or {}).get("traceback") or ""
    return DeadLetter(msg.get("message_id", "?"), queue, msg.get("actor_name", "?"),
                      listed_id(msg.get("actor_name", "?"), args),
                      trace.strip().splitlines()[-1][:200] if trace else "", _age_s(properties, msg))


def _age_s(properties: pika.BasicProperties, msg: dict) -> int:
    """Since RabbitMQ dead-lettered it (its x-death header), else since it was first enqueued."""
    deaths = (properties.headers or {}).get("x-death") or []
    when = deaths[0].get("time") if deaths else None
    if isinstance(when, datetime.datetime):
        when_s = when.replace(tzinfo=when.tzinfo or datetime.UTC).timestamp()
    elif isinstance(when, int | float):
        when_s = float(when)
    else:
        when_s = msg.get("message_timestamp", time.time() * 1000) / 1000
    return max(0, int(time.time() - when_s))
