"""A RabbitMQ restart mid-run loses nothing: the broker's queues are durable and its messages
persistent, so what waits in a queue survives the restart; what was in flight is delivered again
(steps are idempotent); what could not be sent while it was down is re-driven by the sweeper.

The node is a private one of this test's own (tests/rabbitmq.py PrivateNode: its own port, name
and data directory), stopped with `rabbitmqctl -n <node> stop` and started again. The machine's
shared RabbitMQ at 127.0.0.1:5672 is never touched.
"""
from __future__ import annotations

import asyncio
import time

import msgspec
import pytest

from paycell.actors.broker import build_broker
from paycell.queues import open_queues
from paycell.sweeper import sweep_once
from tests import rabbitmq
from tests.conftest import EnvWorker
from tests.helpers import assert_ledger_clean, final_payment, new_user, pay, psp_stats, wait_until, wallet


@pytest.fixture(scope="module")
def node():
    if not rabbitmq.server_installed():
        pytest.skip("RabbitMQ restart test skipped: rabbitmq-server is not installed (it starts a private node)")
    n = rabbitmq.PrivateNode()
    try:
        n.start()
        yield n
    finally:
        n.destroy()


@pytest.fixture(scope="module")
def on_node(node, migrated, psp_sim, tmp_path_factory):
    """Settings, a broker and a worker on the private node."""
    url = rabbitmq.url_for(node.address, "/")
    settings = msgspec.structs.replace(migrated, broker_url=url)
    worker = EnvWorker(str(tmp_path_factory.mktemp("worker-restart") / "worker.log"), {"PAYCELL_BROKER_URL": url})
    broker = build_broker(settings)
    yield settings, broker, worker
    worker.stop()
    broker.close()


@pytest.fixture
async def api(aiohttp_client, on_node):
    from paycell.http.app import create_app
    return await aiohttp_client(create_app(on_node[0]))


def _restart(node: rabbitmq.PrivateNode) -> None:
    node.stop()
    node.start()


async def _statuses(pool, accepted: list[dict]) -> list[str]:
    rows = await pool.fetch("SELECT status FROM payment_request WHERE payment_id = ANY($1::uuid[])",
                            [a["payment_id"] for a in accepted])
    return [r["status"] for r in rows]


async def test_messages_waiting_in_rabbitmq_survive_its_restart(api, pool, node, on_node):
    settings, _, worker = on_node
    worker.stop()  # nobody takes the messages: they wait in the queue across the restart
    users = [new_user() for _ in range(5)]
    accepted = [(await pay(api, settings, u, "tok_card_ok", f"wallet:{u}", "4.00", "card"))[1] for u in users]
    queues = open_queues(settings)
    try:
        assert await asyncio.to_thread(queues.depth, "payments") == 5
        await asyncio.to_thread(_restart, node)
        queues.close()  # its connection died with the node
        assert await asyncio.to_thread(queues.depth, "payments") == 5
    finally:
        queues.close()
    worker.start()

    async def all_done():
        return all(s == "succeeded" for s in await _statuses(pool, accepted))
    assert await wait_until(all_done, timeout_s=60)  # no sweeper: the queued messages themselves did it
    for u in users:
        assert await wallet(api, settings, u) == {"USD": ("4.00", "0.00")}
    await assert_ledger_clean(pool)


async def test_a_rabbitmq_restart_mid_run_completes_every_payment_exactly_once(api, pool, node, on_node, psp_sim):
    settings, broker, worker = on_node
    if worker.proc is None or worker.proc.poll() is not None:
        worker.start()
    users = [new_user() for _ in range(10)]
    tokens = {"tok_card_ok": "card", "tok_card_slow": "card", "tok_card_flaky": "card", "tok_bank_ok": "bank_account"}
    accepted = []
    for i, u in enumerate(users):
        for token in list(tokens)[:2] if i % 2 else list(tokens)[2:]:
            accepted.append((await pay(api, settings, u, token, f"wallet:{u}", "3.00", tokens[token]))[1])
    await asyncio.sleep(0.3)  # steps are running, PSP calls in flight, messages waiting
    node.stop()
    during = []  # accepted while the broker is down: durable in Postgres, their first message not sent
    for u in users[:3]:
        status, body = await pay(api, settings, u, "tok_card_ok", f"wallet:{u}", "1.00", "card")
        assert status == 202, body
        during.append(body)
    await asyncio.to_thread(node.start)
    accepted += during
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and "processing" in await _statuses(pool, accepted):
        await sweep_once(pool, broker, settings)  # as the scheduler's periodic sweep would
        await asyncio.sleep(1)
    for a in accepted:
        final = await final_payment(api, settings, a["user_id"], a["payment_id"])
        assert final["status"] == "succeeded", final
        assert (await psp_stats(psp_sim, final["orders"][0]["payment_order_id"]))["charged"] is True
    for i, u in enumerate(users):
        assert await wallet(api, settings, u) == {"USD": ("7.00" if i < 3 else "6.00", "0.00")}
    await assert_ledger_clean(pool)
