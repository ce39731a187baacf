"""PayPal pay-ins through the connector against its simulator over real HTTP: create ->
requires_action -> the buyer approves -> status captures."""
from __future__ import annotations

import asyncio

import msgspec
import pytest

from paycell.psp.base import PspRejected, PspTransientError
from tests.psp.drivers.paypal import DRIVER
from tests.psp.paypal.conftest import payin


async def _approved(sim, psp, instrument: str = "buyer@example.com"):
    charge = payin(instrument)
    created = await psp.submit(charge)
    assert created.status == "requires_action"
    await DRIVER.approve(sim.http, created.action_url)
    return charge, created


async def test_a_payin_needs_the_buyer_then_status_captures_it(sim, psp):
    charge = payin()
    created = await psp.submit(charge)
    assert created.status == "requires_action"
    assert created.action_url.startswith(f"{sim.url}/checkoutnow?token={created.psp_reference}")
    # Before the buyer acts, the order still waits for them; nothing is captured.
    waiting = await psp.status(msgspec.structs.replace(charge, psp_reference=created.psp_reference))
    assert waiting.status == "requires_action"

    await DRIVER.approve(sim.http, created.action_url)
    done = await psp.status(msgspec.structs.replace(charge, psp_reference=created.psp_reference))
    assert (done.status, done.psp_reference) == ("succeeded", created.psp_reference)

    [record] = await sim.charges()
    assert (record["order_key"], record["status"], record["amount_minor"]) == (charge.idempotency_key, "succeeded", 1230)
    status, order = await sim.call("GET", f"/v2/checkout/orders/{created.psp_reference}",
                                   headers={"Authorization": f"Bearer {await psp.client._access_token()}"})
    unit = order["purchase_units"][0]
    assert (unit["reference_id"], unit["custom_id"], unit["invoice_id"]) == (charge.idempotency_key,) * 3
    assert unit["amount"] == {"currency_code": "USD", "value": "12.30"}


async def test_status_without_the_paypal_id_finds_the_order_by_its_request_id(sim, psp):
    charge, created = await _approved(sim, psp)
    done = await psp.status(charge)  # psp_reference unknown to paycell: replay the create
    assert (done.status, done.psp_reference) == ("succeeded", created.psp_reference)
    assert len(await sim.charges()) == 1


async def test_a_declined_capture_is_a_decline(sim, psp):
    charge, _ = await _approved(sim, psp, "capture-declined@example.com")
    result = await psp.status(charge)
    assert (result.status, result.decline_code) == ("declined", "capture_declined")
    [record] = await sim.charges()
    assert record["status"] == "declined"


async def test_a_refused_instrument_is_a_decline(sim, psp):
    charge, _ = await _approved(sim, psp, "instrument-declined@example.com")
    result = await psp.status(charge)
    assert (result.status, result.decline_code) == ("declined", "instrument_declined")
    assert (await sim.charges())[0]["status"] == "requires_action"  # nothing captured


async def test_a_pending_capture_completes_when_the_clock_passes(sim, psp):
    charge, _ = await _approved(sim, psp, "capture-pending@example.com")
    assert (await psp.status(charge)).status == "pending"
    assert (await psp.status(charge)).status == "pending"
    await sim.advance(DRIVER.settle_after_s)
    assert (await psp.status(charge)).status == "succeeded"
    [record] = await sim.charges()
    assert record["status"] == "succeeded"


async def test_the_same_request_id_makes_one_order(sim, psp):
    charge = payin()
    first = await psp.submit(charge)
    again = await psp.submit(charge)
    assert first.psp_reference == again.psp_reference
    assert [c["reference"] for c in await sim.charges()] == [first.psp_reference]


async def test_a_lost_create_answer_then_status_finds_exactly_one_order(sim, psp):
    charge = payin()
    await sim.faults(drop_after_charge=1)
    with pytest.raises(PspTransientError):
        await psp.submit(charge)
    found = await psp.status(charge)
    assert found.status == "requires_action"
    [record] = await sim.charges()
    assert record["reference"] == found.psp_reference


async def test_a_lost_capture_answer_then_status_captures_once(sim, psp):
    charge, created = await _approved(sim, psp)
    await sim.faults(drop_after_charge=1)
    with pytest.raises(PspTransientError):
        await psp.status(charge)  # the capture is made; its answer is lost
    again = await psp.status(charge)
    assert again.status == "succeeded"
    assert len(sim.world.movements) == 1  # one capture credited the merchant


async def test_concurrent_status_calls_capture_once(sim, psp):
    charge, _ = await _approved(sim, psp)
    results = await asyncio.gather(*(psp.status(charge) for _ in range(5)))
    assert {r.status for r in results} == {"succeeded"}
    assert len(sim.world.movements) == 1
    assert len(sim.world.captures) == 1


async def test_an_outage_leaves_the_outcome_unknown(sim, psp):
    charge = payin()
    await sim.faults(outage=True)
    with pytest.raises(PspTransientError):
        await psp.submit(charge)
    with pytest.raises(PspTransientError):
        await psp.status(charge)
    await sim.call("DELETE", "/_sim/faults")
    assert (await psp.status(charge)).status == "requires_action"
    assert len(await sim.charges()) == 1


async def test_a_timeout_is_transient(sim, psp):
    await sim.faults(timeout=True)
    try:
        with pytest.raises(PspTransientError):
            await psp.submit(payin())
    finally:
        await sim.call("DELETE", "/_sim/faults")


async def test_the_sandbox_mock_response_header_declines_a_capture(sim, psp):
    charge, created = await _approved(sim, psp)
    token = await psp.client._access_token()
    status, body = await sim.call(
        "POST", f"/v2/checkout/orders/{created.psp_reference}/capture",
        headers={"Authorization": f"Bearer {token}", "PayPal-Mock-Response": '{"mock_application_codes": "INSTRUMENT_DECLINED"}'})
    assert status == 422
    assert body["details"][0]["issue"] == "INSTRUMENT_DECLINED"
    assert (await psp.status(charge)).status == "succeeded"  # without the mock it captures


async def test_capture_before_approval_is_not_a_failure(sim, psp):
    charge = payin()
    created = await psp.submit(charge)
    token = await psp.client._access_token()
    status, body = await sim.call("POST", f"/v2/checkout/orders/{created.psp_reference}/capture",
                                  headers={"Authorization": f"Bearer {token}"})
    assert (status, body["details"][0]["issue"]) == (422, "ORDER_NOT_APPROVED")
    assert (await psp.status(charge)).status == "requires_action"


async def test_an_order_paypal_refuses_to_create_is_no_payment(sim, psp):
    charge = payin(amount_minor=10**13)  # above the simulator's limit: 422, nothing made
    with pytest.raises(PspRejected):
        await psp.submit(charge)
    assert await psp.status(charge) is None
    assert await sim.charges() == []


async def test_only_paypal_in_carried_currencies_is_supported(psp):
    assert psp.supports("payin", "paypal", "USD") and psp.supports("payout", "paypal", "JPY")
    assert not psp.supports("payin", "card", "USD")
    assert not psp.supports("payin", "paypal", "HUF")  # PayPal takes no decimals for HUF


async def test_a_jpy_amount_goes_out_without_decimals(sim, psp):
    charge = payin(amount_minor=1500, currency="JPY")
    created = await psp.submit(charge)
    token = await psp.client._access_token()
    _, order = await sim.call("GET", f"/v2/checkout/orders/{created.psp_reference}",
                              headers={"Authorization": f"Bearer {token}"})
    assert order["purchase_units"][0]["amount"] == {"currency_code": "JPY", "value": "1500"}
