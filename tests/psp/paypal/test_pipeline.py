"""A smoke test of the whole pay-out pipeline on the PayPal connector: a Dramatiq worker started
with PAYCELL_PSP_DEFAULT=paypal, `paycell psp-sim` serving PayPal's simulator under /paypal, real
Postgres and Redis. The worker listens on a Redis database of its own (the session's worker, on
the suite's, keeps using the test connector)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import aiohttp
import msgspec
import pytest
import redis

from paycell.actors.broker import build_broker, send
from paycell.store import payments
from tests.helpers import assert_ledger_clean, fund_wallet, new_order, new_user, wait_until
from tests.helpers import read_by_id


@pytest.fixture(scope="module")
def paypal_worker(migrated, psp_sim, tmp_path_factory):
    base, _, db = migrated.redis_url.rpartition("/")
    redis_url = f"{base}/{int(db) + 3 if db.isdigit() else 4}"
    redis.Redis.from_url(redis_url).flushdb()
    log_path = tmp_path_factory.mktemp("paypal-worker") / "worker.log"
    env = {**os.environ, "PAYCELL_PSP_DEFAULT": "paypal", "PAYCELL_REDIS_URL": redis_url, "PAYCELL_PSP_ROUTES": ""}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "dramatiq", "paycell.actors.worker", "--processes", "1",
                                 "--threads", "4"], stdout=log, stderr=log, env=env)
    try:
        deadline = time.monotonic() + 30
        while b"worker.booted" not in log_path.read_bytes():
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()[-2000:]
            time.sleep(0.1)
        broker = build_broker(msgspec.structs.replace(migrated, redis_url=redis_url))
        yield broker
        broker.close()
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


async def _run_payout(pool, book, broker, payee: str) -> tuple[str, payments.Order, int]:
    user = new_user("paypal")
    wallet_id = await fund_wallet(pool, book, user, 10_000)
    async with pool.acquire() as conn, conn.transaction():
        order_id = await new_order(conn, user, "payout", 2_500, instrument=payee, option="paypal")
    send(broker, "screen", user, order_id)

    async def finished():
        async with pool.acquire() as conn:
            order = await read_by_id(conn, order_id)
        return order if order.payment_order_status in ("completed", "failed", "needs_attention") else None

    order = await wait_until(finished, timeout_s=30, interval_s=0.1)
    assert order is not None, f"order {order_id} did not finish"
    async with pool.acquire() as conn:
        balance = await conn.fetchval("SELECT balance_minor FROM account WHERE account_id = $1", wallet_id)
    return order_id, order, balance


async def _sim_charges(settings, order_id: str) -> list[dict]:
    async with aiohttp.ClientSession() as http, http.get(f"{settings.paypal_api_base_url}/_sim/charges") as response:
        assert response.status == 200
        return [c for c in await response.json() if c["order_key"] == order_id]


async def test_a_payout_through_paypal_completes_once_and_the_ledger_agrees(settings, pool, book, paypal_worker):
    order_id, order, balance = await _run_payout(pool, book, paypal_worker, "payee@example.com")
    assert (order.payment_order_status, order.psp) == ("completed", "paypal")
    assert balance == 10_000 - 2_500
    [charge] = await _sim_charges(settings, order_id)
    assert (charge["status"], charge["amount_minor"], charge["reference"]) == ("succeeded", 2_500, order.psp_reference)
    await assert_ledger_clean(pool)


async def test_a_failed_paypal_payout_releases_the_reserve(settings, pool, book, paypal_worker):
    order_id, order, balance = await _run_payout(pool, book, paypal_worker, "payout-failed@example.com")
    async with pool.acquire() as conn:
        failure_code = await conn.fetchval("SELECT failure_code FROM payment_order WHERE payment_order_id = $1",
                                           order_id)
    assert (order.payment_order_status, failure_code) == ("failed", "receiver_account_locked")
    assert balance == 10_000
    [charge] = await _sim_charges(settings, order_id)
    assert charge["status"] == "declined"
    await assert_ledger_clean(pool)
