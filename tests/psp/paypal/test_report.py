"""The simulator's STL settlement report: record types, unsigned minor amounts with CR/DR."""
from __future__ import annotations

import csv
import datetime
import io

from tests.psp.drivers.paypal import DRIVER
from tests.psp.paypal.conftest import payin, payout


async def test_the_day_report_lists_each_capture_and_payout_once(sim, psp):
    charge = payin(amount_minor=1230)
    created = await psp.submit(charge)
    await DRIVER.approve(sim.http, created.action_url)
    assert (await psp.status(charge)).status == "succeeded"
    out = payout(amount_minor=500)
    assert (await psp.submit(out)).status == "succeeded"

    day = datetime.datetime.fromtimestamp(sim.world.now_s(), datetime.timezone.utc).date()
    async with sim.http.get(f"{sim.url}/_sim/reports", params={"date": day.isoformat()}) as response:
        assert response.status == 200
        raw = await response.read()
    assert raw.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert [r[0] for r in rows] == ["RH", "FH", "SH", "CH", "SB", "SB", "SF", "SC", "RF", "RC", "FF"]
    columns = rows[3][1:]
    body = [dict(zip(columns, r[1:], strict=True)) for r in rows if r[0] == "SB"]
    by_invoice = {b["Invoice ID"]: b for b in body}
    pay_in, pay_out = by_invoice[charge.idempotency_key], by_invoice[out.idempotency_key]
    assert (pay_in["Transaction Event Code"], pay_in["Transaction Debit or Credit"], pay_in["Gross Transaction Amount"],
            pay_in["PayPal Reference ID"]) == ("T0006", "CR", "1230", created.psp_reference)
    assert (pay_out["Transaction Event Code"], pay_out["Transaction Debit or Credit"],
            pay_out["Gross Transaction Amount"]) == ("T0001", "DR", "500")
    assert int(pay_in["Fee Amount"]) == (1230 * 349 + 5000) // 10000
    sf = next(r for r in rows if r[0] == "SF")
    assert sf[1:4] == ["USD", "1230", "500"]
    assert next(r for r in rows if r[0] == "SC")[1] == "2" and rows[-1] == ["FF", str(len(rows))]

    yesterday = (day - datetime.timedelta(days=1)).isoformat()
    async with sim.http.get(f"{sim.url}/_sim/reports", params={"date": yesterday}) as response:
        empty = list(csv.reader(io.StringIO((await response.read()).decode("utf-8-sig"))))
    assert [r[0] for r in empty] == ["RH", "FH", "SH", "CH", "SC", "RC", "FF"]
