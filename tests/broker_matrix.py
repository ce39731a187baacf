"""The pipeline tests' broker matrix: each test module that imports these fixtures runs every one
of its tests on Redis and on RabbitMQ (`test_x[redis]`, `test_x[rabbitmq]`).

`pipeline` is module-scoped and parametrised by broker: on Redis it is the session's worker and
broker; on RabbitMQ a worker of its own (PAYCELL_BROKER_URL to this session's vhost, see
conftest `rabbitmq_url`, which skips the RabbitMQ half saying why when there is no server). The
module's `api`, `broker` and `worker` fixtures are overridden to the pipeline's, so the tests
themselves are written once. What differs per broker (is everything processed? lose every queued
message) is a method of `Pipeline`.
"""
from __future__ import annotations

import asyncio
from urllib.parse import unquote, urlsplit

import dramatiq
import msgspec
import pytest
import redis

from paycell.actors.broker import STEP_QUEUES, build_broker
from paycell.config import Settings
from paycell.queues import Queues, open_queues
from tests import rabbitmq
from tests.conftest import EnvWorker, Worker

BROKERS = ["redis", "rabbitmq"]


class Pipeline:
    def __init__(self, kind: str, settings: Settings, broker: dramatiq.Broker, worker: Worker):
        self.kind, self.settings, self.broker, self.worker = kind, settings, broker, worker
        self.queues: Queues = open_queues(settings)

    def _redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.settings.redis_url)

    def _vhost(self) -> str:
        return unquote(urlsplit(self.settings.broker_url).path.removeprefix("/"))

    async def drained(self) -> bool:
        """No payment message waits, is delayed for a retry, or is held by a worker."""
        await asyncio.sleep(0.2)
        if self.kind == "redis":
            client = self._redis()
            busy = client.llen("dramatiq:payments") + client.llen("dramatiq:payments.DQ")
            acks = sum(client.scard(k) for k in client.scan_iter("dramatiq:__acks__.*"))
            return busy == 0 and acks == 0
        counts = await asyncio.to_thread(rabbitmq.messages, self._vhost())  # ready + unacknowledged
        return counts.get("payments", 0) == 0 and counts.get("payments.DQ", 0) == 0

    def drop_payment_messages(self) -> None:
        """Every payment message waiting in the broker is lost (as in a crash of an unreplicated broker)."""
        if self.kind == "redis":
            self._redis().delete("dramatiq:payments", "dramatiq:payments.msgs")
        else:
            rabbitmq.purge(self.settings.broker_url, ["payments", "payments.DQ"])

    def lose_everything(self) -> None:
        """Every queued message of every queue is lost (Redis: its whole database)."""
        if self.kind == "redis":
            self._redis().flushdb()
        else:
            rabbitmq.purge(self.settings.broker_url,
                           [f"{q}{suffix}" for q in set(STEP_QUEUES.values()) for suffix in ("", ".DQ")])

    def in_dead_letter_queue(self) -> list[dict]:
        """The dead-lettered messages as the broker holds them (a payment step's order id last in its args)."""
        return [{"order_id": d.order_id, "actor": d.actor, "broker_id": d.broker_id} for d in self.queues.dead_letters()]

    def close(self) -> None:
        self.queues.close()


@pytest.fixture(scope="module", params=BROKERS)
def pipeline(request, migrated, psp_sim, tmp_path_factory):
    if request.param == "redis":
        p = Pipeline("redis", migrated, request.getfixturevalue("redis_broker"),
                     request.getfixturevalue("redis_worker"))
        yield p
        p.close()
        return
    url = request.getfixturevalue("rabbitmq_url")
    settings = msgspec.structs.replace(migrated, broker_url=url)
    w = EnvWorker(str(tmp_path_factory.mktemp("worker-rabbitmq") / "worker.log"), {"PAYCELL_BROKER_URL": url})
    broker = build_broker(settings)
    p = Pipeline("rabbitmq", settings, broker, w)
    p.lose_everything()  # nothing an earlier module of this session left
    w.start()
    try:
        yield p
    finally:
        w.stop()
        p.close()
        broker.close()


@pytest.fixture
async def api(aiohttp_client, pipeline):
    from paycell.http.app import create_app
    return await aiohttp_client(create_app(pipeline.settings))


@pytest.fixture
def broker(pipeline):
    return pipeline.broker


@pytest.fixture
def worker(pipeline):
    return pipeline.worker
