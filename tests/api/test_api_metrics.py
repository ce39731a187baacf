"""GET /metrics: Prometheus text for operators only; request latency per route template (never per
raw path), the payments backlog and the admission refusals."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from paycell.http.app import create_app
from paycell.http.state import LAG
from tests.api.conftest import parked
from tests.api.support import payer, payin, post_payment
from tests.helpers import assert_ledger_clean, auth_header, operator_header, wait_until


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
