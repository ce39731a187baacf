"""With RabbitMQ as the broker, what reads the queues reads RabbitMQ: `paycell queues` and `paycell
dlq list/replay`, the admission gate (the depth only: RabbitMQ does not tell the oldest message's
age), GET /metrics' backlog gauges and GET /ready. No worker listens on the vhost here, so every
accepted payment's message stays queued. Skips, saying why, without a RabbitMQ at 127.0.0.1:5672."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import msgspec
import pika
from prometheus_client.parser import text_string_to_metric_families

from paycell.actors.broker import STEP_QUEUES, build_broker, send
from paycell.http.app import create_app
from paycell.http.state import LAG
from tests import rabbitmq
from tests.api.support import call, error_of, payer, payin, post_payment
from tests.conftest import RABBITMQ_ADDRESS, EnvWorker
from tests.helpers import assert_ledger_clean, operator_header, pay, wait_until, wallet

PAYCELL = os.path.join(os.path.dirname(sys.executable), "paycell")
ALL_QUEUES = [f"{q}{suffix}" for q in set(STEP_QUEUES.values()) for suffix in ("", ".DQ", ".XQ")]


def _paycell(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PAYCELL, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PAYCELL_BROKER_URL": url})


def _counts(out: str) -> dict[str, tuple[int, int, int]]:
    lines = out.splitlines()
    assert lines[0].split() == ["queue", "ready", "delayed", "dead"]
    return {name: (int(r), int(d), int(x)) for name, r, d, x in (line.split() for line in lines[1:])}


def test_queues_and_dlq_commands_read_rabbitmq(rabbitmq_url, migrated):
    rabbitmq.purge(rabbitmq_url, ALL_QUEUES)
    broker = build_broker(msgspec.structs.replace(migrated, broker_url=rabbitmq_url))
    try:
        send(broker, "screen", "no-user", "not-an-order-1")
        send(broker, "screen", "no-user", "not-an-order-2")
        # Dead-letter one as Dramatiq does when its retries run out: a nack without requeue.
        channel = broker.channel
        method, _, body = channel.basic_get("payments")
        channel.basic_nack(method.delivery_tag, requeue=False)
        dead_id = msgspec.json.decode(body)["message_id"]

        listed = _paycell(rabbitmq_url, "queues")
        assert listed.returncode == 0, listed.stderr
        assert _counts(listed.stdout)["payments"] == (1, 0, 1)
        dlq = _paycell(rabbitmq_url, "dlq", "list")
        assert dlq.returncode == 0, dlq.stderr
        [line] = [ln for ln in dlq.stdout.splitlines() if dead_id in ln]
        assert line.startswith(f"rabbitmq:{dead_id}") and "screen" in line and line.split()[-1] == "rabbitmq"
        # Listing took nothing away.
        assert _counts(_paycell(rabbitmq_url, "queues").stdout)["payments"] == (1, 0, 1)

        replayed = _paycell(rabbitmq_url, "dlq", "replay", f"rabbitmq:{dead_id}")
        assert replayed.returncode == 0 and "replayed" in replayed.stdout, replayed
        assert _counts(_paycell(rabbitmq_url, "queues").stdout)["payments"] == (2, 0, 0)
        again = _paycell(rabbitmq_url, "dlq", "replay", f"rabbitmq:{dead_id}")
        assert again.returncode == 1 and "not found" in again.stdout
    finally:
        rabbitmq.purge(rabbitmq_url, ALL_QUEUES)
        broker.close()


async def test_admission_reads_the_depth_of_the_rabbitmq_queue(rabbitmq_url, aiohttp_client, migrated, pool):
    await asyncio.to_thread(rabbitmq.purge, rabbitmq_url, ALL_QUEUES)
    depth_max = 3
    settings = msgspec.structs.replace(migrated, broker_url=rabbitmq_url, admission_queue_depth_max=depth_max,
                                       admission_check_interval_ms=20)
    api = await aiohttp_client(create_app(settings))
    user = await payer(api, settings, "admission-rmq")
    for _ in range(depth_max + 1):
        assert (await post_payment(api, settings, user, payin(user, amount="1.00"))).status == 202
    sampler = api.app[LAG]

    async def depth(at_least: int | None = None, at_most: int | None = None):
        lag = sampler.latest
        return lag is not None and (at_least is None or lag.depth >= at_least) and (at_most is None or lag.depth <= at_most)
    assert await wait_until(lambda: depth(at_least=depth_max + 1), timeout_s=10)
    assert sampler.latest.oldest_age_known is False

    refused = payin(user, amount="1.00")
    reply = await post_payment(api, settings, user, refused)
    assert error_of(reply) == (503, "pipeline_behind") and reply.headers["Retry-After"] == "1"

    scraped = await api.get("/metrics", headers=operator_header(settings))
    assert scraped.status == 200
    families = {f.name: f for f in text_string_to_metric_families(await scraped.text())}
    assert [s.value for s in families["paycell_payments_queue_depth"].samples] == [depth_max + 1]
    assert families["paycell_payments_queue_oldest_age_seconds"].samples == []  # not read, so not reported

    ready = await call(api, "GET", "/ready")
    assert ready.status == 200 and ready.json["checks"] == {"database": "ok", "redis": "ok", "broker": "ok"}

    await asyncio.to_thread(rabbitmq.purge, rabbitmq_url, ALL_QUEUES)  # the workers caught up
    assert await wait_until(lambda: depth(at_most=0), timeout_s=10)
    assert (await post_payment(api, settings, user, refused)).status == 202
    await asyncio.to_thread(rabbitmq.purge, rabbitmq_url, ALL_QUEUES)
    await assert_ledger_clean(pool)


async def test_with_rabbitmq_down_payments_are_still_accepted_and_the_web_is_not_ready(aiohttp_client, migrated, pool):
    settings = msgspec.structs.replace(migrated, broker_url="amqp://guest:guest@127.0.0.1:1/%2F")
    api = await aiohttp_client(create_app(settings))
    user = await payer(api, settings, "rmq-down")
    body = payin(user, amount="1.00")
    accepted = await post_payment(api, settings, user, body)
    assert accepted.status == 202  # durable in Postgres; the sweeper sends it once the broker is back
    row = await pool.fetchrow("SELECT status FROM payment_request WHERE payment_id = $1::uuid", body["payment_id"])
    assert row["status"] == "processing"
    ready = await call(api, "GET", "/ready")
    assert error_of(ready) == (503, "not_ready") and "broker" in ready.json["error"]["message"]
    await assert_ledger_clean(pool)


async def test_on_quorum_queues_a_payment_goes_through_and_dead_letters_are_listed(rabbitmq_url, aiohttp_client,
                                                                                     migrated, pool, psp_sim,
                                                                                     tmp_path):
    """PAYCELL_RABBITMQ_QUEUE_TYPE=quorum (replicated queues) on a vhost of its own: quorum is fixed
    when a queue is first declared, and the session's vhost holds classic ones."""
    vhost = f"paycell_test_{os.getpid()}_quorum"
    with rabbitmq.own_vhost(RABBITMQ_ADDRESS, vhost) as url:
        settings = msgspec.structs.replace(migrated, broker_url=url, rabbitmq_queue_type="quorum")
        worker = EnvWorker(str(tmp_path / "worker.log"),
                           {"PAYCELL_BROKER_URL": url, "PAYCELL_RABBITMQ_QUEUE_TYPE": "quorum"})
        worker.start()
        try:
            api = await aiohttp_client(create_app(settings))
            user = await payer(api, settings, "quorum")
            status, body = await pay(api, settings, user, "tok_card_ok", f"wallet:{user}", "5.00", "card", wait_s=10)
            assert status == 201 and body["status"] == "succeeded", body
            assert await wallet(api, settings, user) == {"USD": ("5.00", "0.00")}
        finally:
            worker.stop()
        types = await asyncio.to_thread(rabbitmq.queue_types, vhost)
        assert {types[q] for q in ("payments", "payments.DQ", "payments.XQ")} == {"quorum"}, types
        broker = build_broker(settings)
        try:  # a dead letter as Dramatiq makes one, listed from the quorum dead-letter queue
            send(broker, "screen", "no-user", "not-an-order")
            channel = broker.channel
            method, _, _ = channel.basic_get("payments")
            channel.basic_nack(method.delivery_tag, requeue=False)
            listed = _paycell(url, "dlq", "list")
            [line] = [ln for ln in listed.stdout.splitlines() if "not-an-order" in ln]
            assert line.startswith("rabbitmq:") and " screen " in line, listed
            assert _counts(_paycell(url, "queues").stdout)["payments"] == (0, 0, 1)
        finally:
            broker.close()
    await assert_ledger_clean(pool)
