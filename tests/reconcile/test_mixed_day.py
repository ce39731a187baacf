"""A day of mixed traffic through the real pipeline (API -> worker -> connector -> provider
simulator over HTTP -> webhooks back), then each provider's report of the day fetched where its
simulator serves it and reconciled: when nothing went wrong, zero breaks, every paid order matched,
the provider's fees posted, the ledger clean."""
from __future__ import annotations

import datetime

import pytest

from paycell.reconcile import fetch, matching, settlement
from tests.helpers import assert_ledger_clean, new_user, pay
from tests.psp.conformance import Sim, all_drivers, drive, pay_via

pytestmark = pytest.mark.usefixtures("worker")
DRIVERS = [d for d in all_drivers() if d.connector in settlement.PARSERS]


@pytest.fixture(params=DRIVERS, ids=[d.connector for d in DRIVERS])
async def sim(request, psp_sim, api):
    s = Sim(psp_sim, request.param)
    s.driver = request.param
    await s._call("POST", "/_sim/reset")
    await s.webhooks(url=str(api.make_url(f"/psp/webhooks/{request.param.connector}")))
    yield s
    await s.clear_faults()
    await s.close()


async def test_a_day_of_mixed_traffic_reconciles_with_zero_breaks(api, settings, pool, sim, ctx, tmp_path):
    driver = sim.driver
    start = datetime.datetime.now(datetime.timezone.utc)  # earlier tests' settlements are not this day's
    paid = []
    for amount in ("10.00", "23.45", "99.99"):
        user = new_user(driver.connector)
        status, body = await pay_via(api, settings, driver, user, kind="payin", option=driver.option,
                                     token=driver.payin_ok, amount=amount)
        assert status in (201, 202), body
        payment = await drive(api, settings, pool, sim, driver, user, body["payment_id"])
        assert payment["status"] == "succeeded", payment
        paid.append(payment["orders"][0]["payment_order_id"])
    decline = next(iter(driver.declines.values()))
    user = new_user(driver.connector)
    status, body = await pay_via(api, settings, driver, user, kind="payin", option=driver.option, token=decline,
                                 amount="5.00")
    assert (await drive(api, settings, pool, sim, driver, user, body["payment_id"]))["status"] == "failed"
    if driver.payout_ok is not None:
        user = new_user(driver.connector)
        assert (await pay(api, settings, user, "tok_card_ok", f"wallet:{user}", "40.00", "card", wait_s=10))[0] == 201
        status, body = await pay_via(api, settings, driver, user, kind="payout", option=driver.option,
                                     token=driver.payout_ok, amount="15.00", wait_s=1)
        payment = await drive(api, settings, pool, sim, driver, user, body["payment_id"])
        assert payment["status"] == "succeeded", payment
        paid.append(payment["orders"][0]["payment_order_id"])

    today = datetime.datetime.now(datetime.timezone.utc).date()
    path = await fetch.download(settings, driver.connector, today, tmp_path)
    period = (start, datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=5))
    dry = await settlement.dry_run(pool, settings, driver.connector, path, matching.default())
    assert dry.outcomes.get("matched") == len(paid), dry
    done = await settlement.reconcile_file(ctx, driver.connector, path, period=period)
    assert done.run.counts == {}, done.run
    assert (done.run.auto_fixed, done.run.queued) == (0, 0)
    assert done.run.totals["USD"]["matched"] == len(paid)
    matched = {r["payment_order_id"] for r in await pool.fetch(
        "SELECT payment_order_id::text FROM recon_line WHERE owner_id = $1 AND outcome = 'matched' "
        "AND file_sha256 = decode($2, 'hex')", f"recon:{driver.connector}", done.run.file_sha256)}
    assert matched == set(paid)
    again = await settlement.reconcile_file(ctx, driver.connector, path, period=period)
    assert again.replayed
    await assert_ledger_clean(pool)
