"""The workers' metrics: `paycell worker` serves Dramatiq's step metrics and paycell's pipeline
counters (payments finished per kind, connector, status and code; time to completion) from all
its processes on one port, and the web's GET /metrics adds the payments it accepted."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import aiohttp
import msgspec
import redis
from prometheus_client.parser import text_string_to_metric_families

from paycell.http.app import create_app
from tests.conftest import _free_port
from tests.helpers import (assert_ledger_clean, attach, auth_header, new_user, operator_header, payment_body,
                           wait_until)

PAYCELL = os.path.join(os.path.dirname(sys.executable), "paycell")
OK, DECLINED = 5, 2


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def _value(samples, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def _scrape(url: str) -> dict:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200
        return _samples(await resp.text())


async def test_a_worker_group_serves_its_steps_and_the_payments_it_finished(aiohttp_client, migrated, psp_sim, pool,
                                                                            tmp_path):
    base, _, db = migrated.redis_url.rpartition("/")
    redis_url = f"{base}/{int(db) + 7}"  # a queue no other worker of the suite takes from
    redis.Redis.from_url(redis_url).flushdb()
    settings = msgspec.structs.replace(migrated, redis_url=redis_url)
    api = await aiohttp_client(create_app(settings))
    user = new_user("wmetrics")
    await attach(api, settings, user, "tok_card_ok")
    await attach(api, settings, user, "tok_card_decline")
    port = _free_port()
    log = tmp_path / "worker.log"
    env = {**os.environ, "PAYCELL_REDIS_URL": redis_url, "PAYCELL_WORKER_METRICS_PORT": str(port),
           "PAYCELL_LOG_FORMAT": "json"}
    with open(log, "ab") as out:
        worker = subprocess.Popen([PAYCELL, "worker", "--processes", "2", "--threads", "4"], env=env, stdout=out,
                                  stderr=out, start_new_session=True)
    try:
        before = await api.get("/metrics", headers=operator_header(settings))
        accepted_before = _value(_samples(await before.text()), "paycell_payments_accepted_total", kind="payin")
        for token, n in (("tok_card_ok", OK), ("tok_card_decline", DECLINED)):
            for _ in range(n):
                body = payment_body(user, token, f"wallet:{user}", "2.50", "card")
                resp = await api.post("/payments/payment/v1", headers=auth_header(settings, user), json=body)
                assert resp.status == 202, await resp.text()
        assert await wait_until(lambda: _finished(pool, user, OK + DECLINED), timeout_s=60), log.read_text()[-3000:]

        url = f"http://127.0.0.1:{port}/metrics"

        async def counted() -> bool:
            try:
                got = await _scrape(url)
            except aiohttp.ClientError:
                return False
            return _value(got, "paycell_payments_finished_total", kind="payin", connector="test",
                          status="completed", code="") == OK
        assert await wait_until(counted, timeout_s=20), log.read_text()[-3000:]
        got = await _scrape(url)
        # Exactly what this worker group finished, summed over its two processes.
        assert _value(got, "paycell_payments_finished_total", kind="payin", connector="test", status="failed",
                      code="card_declined") == DECLINED
        assert _value(got, "paycell_payment_completion_seconds_count", kind="payin", status="completed") == OK
        assert _value(got, "paycell_payment_completion_seconds_count", kind="payin", status="failed") == DECLINED
        # Dramatiq's own, per step (actor): every payment was screened and charged once.
        assert _value(got, "dramatiq_messages_total", queue_name="payments", actor_name="screen") == OK + DECLINED
        assert _value(got, "dramatiq_message_duration_milliseconds_count", queue_name="payments",
                      actor_name="charge") >= OK + DECLINED
        assert _value(got, "dramatiq_message_rejects_total", queue_name="payments", actor_name="charge") == 0
        # The web counted what it accepted (a process-wide counter: the difference is this test's).
        after = _samples(await (await api.get("/metrics", headers=operator_header(settings))).text())
        assert _value(after, "paycell_payments_accepted_total", kind="payin") - accepted_before == OK + DECLINED
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
    redis.Redis.from_url(redis_url).flushdb()
    await assert_ledger_clean(pool)


async def _finished(pool, user: str, n: int) -> bool:
    done = await pool.fetchval(
        "SELECT count(*) FROM payment_request WHERE user_id = $1 AND status IN ('succeeded', 'failed')", user)
    return done == n
