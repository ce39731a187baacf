"""The Adyen simulator's own wire behaviour: Adyen's test holder names, authentication, key
limits, error bodies and the settlement details report."""
from __future__ import annotations

import csv
import datetime
import io
import uuid

import pytest

from paycell.psp.adyen import report as adyen_report
from paycell.psp.adyen import sim_methods, sim_report

from tests.psp.adyen.test_connector import charge


async def post(sim, settings, path: str, body: dict, *, key: str | None = None, api_key: str | None = None):
    headers = {"X-API-Key": settings.adyen_api_key if api_key is None else api_key,
               "Idempotency-Key": key or str(uuid.uuid4())}
    async with sim.http.post(sim.url + path, json=body, headers=headers) as response:
        return response.status, await response.json()


def payment(settings, holder_name: str | None = None, stored_id: str = "AUTHORISED000001") -> dict:
    method = {"type": "scheme", "storedPaymentMethodId": stored_id} | ({"holderName": holder_name} if holder_name else {})
    return {"merchantAccount": settings.adyen_merchant_account, "reference": str(uuid.uuid4()),
            "amount": {"currency": "EUR", "value": 1000}, "paymentMethod": method,
            "returnUrl": "https://shop.example/back", "shopperReference": "user-1"}


@pytest.mark.parametrize(("holder_name", "result_code", "reason_code"), [
    ("DECLINED", "Refused", "2"), ("CARD_EXPIRED", "Refused", "6"), ("NOT_ENOUGH_BALANCE", "Refused", "12"),
    ("BLOCK_CARD", "Refused", "5"), ("ERROR", "Error", "4"), ("CANCELLED", "Cancelled", "15"),
    ("CVC_DECLINED", "Refused", "24"), ("John Smith", "Authorised", None),
])
async def test_holder_names_choose_the_outcome_as_in_adyens_test_environment(sim, settings, holder_name,
                                                                             result_code, reason_code):
    status, answer = await post(sim, settings, "/checkout/v71/payments", payment(settings, holder_name))
    assert status == 200
    assert (answer["resultCode"], answer.get("refusalReasonCode")) == (result_code, reason_code)


async def test_every_documented_stored_id_has_a_behaviour():
    assert set(sim_methods.PAYIN_METHODS).isdisjoint(sim_methods.PAYOUT_METHODS)
    assert all(len(i) == 16 and i.isalnum() and i.isupper() for i in [*sim_methods.PAYIN_METHODS,
                                                                      *sim_methods.PAYOUT_METHODS])
    for stored_id in [*sim_methods.PAYIN_METHODS, *sim_methods.PAYOUT_METHODS]:
        assert stored_id in sim_methods.__doc__


async def test_a_wrong_api_key_is_401_with_adyens_error_body(sim, settings):
    status, answer = await post(sim, settings, "/checkout/v71/payments", payment(settings), api_key="nope")
    assert (status, answer["errorCode"], answer["errorType"]) == (401, "000", "security")
    assert await sim.charges() == []


async def test_an_idempotency_key_over_64_characters_is_refused(sim, settings):
    status, answer = await post(sim, settings, "/checkout/v71/payments", payment(settings), key="k" * 65)
    assert (status, answer["errorCode"]) == (422, "702")


async def test_a_malformed_payment_is_refused_without_a_payment(sim, settings):
    for broken in ({"merchantAccount": settings.adyen_merchant_account},
                   payment(settings) | {"amount": {"currency": "EUR", "value": 0}},
                   payment(settings) | {"shopperReference": None}):
        status, answer = await post(sim, settings, "/checkout/v71/payments", {k: v for k, v in broken.items()
                                                                            if v is not None})
        assert status == 422, answer
    assert await sim.charges() == []


async def test_the_settlement_report_lists_the_days_payments_payouts_and_the_merchant_payout(psp, sim):
    paid = await psp.submit(charge("AUTHORISED000001", amount_minor=10_000))
    out = await psp.submit(charge("PAYOUTOK00000001", direction="payout", amount_minor=2_500))
    declined = await psp.submit(charge("REFUSED000000002"))
    today = datetime.datetime.fromtimestamp((await sim.call("GET", "/_sim/clock"))["now_s"], datetime.UTC).date()
    rows = list(csv.DictReader(io.StringIO(await sim.report(today))))
    assert tuple(rows[0]) == sim_report.COLUMNS
    by_type = {r["Type"]: r for r in rows}
    assert set(by_type) == {"Settled", "PaidOut", "MerchantPayout"}
    settled, paid_out, payout = by_type["Settled"], by_type["PaidOut"], by_type["MerchantPayout"]
    assert (settled["Psp Reference"], settled["Gross Credit (GC)"], settled["Commission (NC)"],
            settled["Net Credit (NC)"]) == (paid.psp_reference, "100.00", "1.00", "99.00")
    assert (paid_out["Psp Reference"], paid_out["Gross Debit (GC)"]) == (out.psp_reference, "25.00")
    assert (payout["Net Currency"], payout["Net Debit (NC)"]) == ("EUR", "74.00")
    assert declined.psp_reference not in {r["Psp Reference"] for r in rows}
    yesterday = list(csv.DictReader(io.StringIO(await sim.report(today - datetime.timedelta(days=1)))))
    assert yesterday == []


async def test_the_report_needs_a_date(sim):
    await sim.call("GET", "/_sim/reports", expect=400)


async def test_the_report_reads_back_into_minor_units_by_header(psp, sim):
    paid = await psp.submit(charge("AUTHORISED000001", amount_minor=12_345, currency="KWD"))
    today = datetime.datetime.fromtimestamp((await sim.call("GET", "/_sim/clock"))["now_s"], datetime.UTC).date()
    text = await sim.report(today)
    rows = adyen_report.parse(text.encode())
    settled = next(r for r in rows if r.type == "Settled")
    assert (settled.psp_reference, settled.gross_currency, settled.gross_credit_minor, settled.commission_minor,
            settled.net_credit_minor) == (paid.psp_reference, "KWD", 12_345, 123, 12_222)
    # Columns reordered and one added, as an account may configure: still read by header.
    table = list(csv.reader(io.StringIO(text)))
    reordered = io.StringIO()
    csv.writer(reordered).writerows([["Extra", *reversed(line)] for line in table])
    assert adyen_report.parse(reordered.getvalue().encode()) == rows


def test_a_file_that_is_not_the_report_is_refused():
    with pytest.raises(adyen_report.ReportError, match="Psp Reference"):
        adyen_report.parse(b"a,b\n1,2\n")
    header = ",".join(sim_report.COLUMNS)
    bad = header + "\n" + ",".join(["x"] * 10 + ["12.3456"] + [""] * 12) + "\n"
    with pytest.raises(adyen_report.ReportError, match="line 2"):
        adyen_report.parse(bad.encode())
