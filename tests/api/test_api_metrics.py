"""GET /metrics: Prometheus text for operators only; request latency per route template (never per
raw path), the payments backlog and the admission refusals."""
from __future__ import annotations

import re

import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from paycell import workflow
from paycell.http.app import create_app
from paycell.metrics import system
from paycell.http.state import LAG
from paycell.psp.base import PspTransientError
from paycell.psp.breakers import Breakers
from paycell.store import payments
from tests.api.conftest import parked
from tests.api.support import payer, payin, post_payment
from tests.helpers import assert_ledger_clean, auth_header, new_order, new_user, operator_header, wait_until
from tests.helpers import lock_by_id


async def test_operators_read_the_web_metrics_and_users_cannot(aiohttp_client, migrated, pool):
    settings = parked(migrated)
    api = await aiohttp_client(create_app(settings))
    user = await payer(api, settings, "metrics")
    body = payin(user, amount="1.00")
    assert (await post_payment(api, settings, user, body)).status == 202
    got = await api.get(f"/payments/payment/v1/{body['payment_id']}", headers=auth_header(settings, user))
    assert got.status == 200
    assert (await api.get("/metrics")).status == 401
    forbidden = await api.get("/metrics", headers=auth_header(settings, user))
    assert forbidden.status == 403 and (await forbidden.json())["error"]["code"] == "forbidden"
    assert await wait_until(lambda: _sampled(api), timeout_s=10)

    resp = await api.get("/metrics", headers=operator_header(settings))
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(await resp.text())}
    counts = {(s.labels["route"], s.labels["method"], s.labels["status"]): s.value
              for s in families["paycell_http_request_duration_seconds"].samples if s.name.endswith("_count")}
    assert counts[("/payments/payment/v1", "POST", "202")] == 1
    assert counts[("/payments/payment/v1/{payment_id}", "GET", "200")] == 1  # the template, not the id
    assert counts[("/metrics", "GET", "403")] == 1
    [depth] = families["paycell_payments_queue_depth"].samples
    assert depth.value == 1  # the accepted payment's screen message: no worker listens here
    assert [s.value for s in families["paycell_admission_refused"].samples if s.name.endswith("_total")] == [0]
    assert not any(body["payment_id"] in line for line in (await resp.text()).splitlines())
    await assert_ledger_clean(pool)


async def _sampled(api) -> bool:
    latest = api.app[LAG].latest
    return latest is not None and latest.depth >= 1


async def test_the_system_gauges_show_live_orders_those_needing_a_human_and_open_breakers(aiohttp_client, migrated,
                                                                                         pool):
    settings = parked(migrated, metrics_db_refresh_ms=1)
    api = await aiohttp_client(create_app(settings))
    before = await _scrape(api, settings)
    user = new_user("sysmetrics")
    async with pool.acquire() as conn:
        live = [await new_order(conn, user, "payin", 1_00) for _ in range(3)]
        async with conn.transaction():
            order = await lock_by_id(conn, live[0])
            await payments.move(conn, order, "needs_attention", event="order.needs_attention",
                                data={"reason": "test"}, failure_code="retries_exhausted")
    breakers = Breakers(msgspec.structs.replace(settings, psp_breaker_failures_max=3))  # (the suite's is huge)
    try:
        for _ in range(3):
            with pytest.raises(PspTransientError):
                await breakers.call("bank", _timeout)
        after = await _scrape(api, settings)
    finally:
        await breakers.close()
    assert after[("paycell_system_metrics_up", ())] == 1
    requested = ("paycell_payments_live", (("state", "requested"),))
    assert after[requested] - before.get(requested, 0) == 2
    assert after[("paycell_payments_live_oldest_age_seconds", (("state", "requested"),))] >= 0
    assert after[("paycell_payments_needs_attention", ())] - before[("paycell_payments_needs_attention", ())] == 1
    assert after[("paycell_breaker_state", (("connector", "bank"), ("state", "opened")))] == 1
    assert after[("paycell_breaker_state", (("connector", "bank"), ("state", "closed")))] == 0
    assert after[("paycell_breaker_state", (("connector", "stripe"), ("state", "closed")))] == 1
    assert ("paycell_review_queue_items", (("state", "open"),)) in after
    # The gauges name states and connectors, never a payment or a user.
    text = await (await api.get("/metrics", headers=operator_header(settings))).text()
    assert user not in text and not any(o in text for o in live)
    parked(migrated)  # forget the opened breaker
    await assert_ledger_clean(pool)


async def _timeout():
    raise PspTransientError("timed out (test)")


async def _scrape(api, settings) -> dict:
    resp = await api.get("/metrics", headers=operator_header(settings))
    assert resp.status == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(await resp.text()) for s in f.samples}


def test_the_live_orders_query_names_every_terminal_state():
    named = set(re.findall(r"'([a-z_]+)'", system.LIVE_PREDICATE))
    assert named == set(workflow.TERMINAL)
