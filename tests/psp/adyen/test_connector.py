"""The Adyen connector against its simulator over real HTTP: every resultCode, idempotency, lost
answers, outages, the redirect flow and pay-outs."""
from __future__ import annotations

import asyncio
import uuid

import aiohttp
import msgspec
import pytest
from yarl import URL

from paycell.psp.adyen import connector as adyen
from paycell.psp.adyen import sim_methods
from paycell.psp.base import Charge, PspRejected, PspTransientError
from paycell.psp.registry import adapter_for, token_fits
from tests.psp.drivers.adyen import DRIVER


def charge(instrument: str, *, direction: str = "payin", amount_minor: int = 1_250, option: str = "card",
           currency: str = "EUR", **kw) -> Charge:
    return Charge(idempotency_key=str(uuid.uuid4()), direction=direction, amount_minor=amount_minor,
                  currency=currency, instrument=instrument, payment_option=option,
                  customer_ref=kw.pop("customer_ref", "user-42"), **kw)


@pytest.mark.parametrize(("stored_id", "status", "decline_code"), [
    ("AUTHORISED000001", "succeeded", None),
    ("REFUSED000000002", "declined", "refused:2:Refused"),
    ("NOBALANCE0000012", "declined", "refused:12:Not enough balance"),
    ("EXPIRED000000006", "declined", "refused:6:Expired Card"),
    ("BLOCKED000000005", "declined", "refused:5:Blocked Card"),
    ("ERROR00000000004", "declined", "error:4:Acquirer Error"),
    ("CANCELLED0000015", "declined", "cancelled:15:Cancelled"),
    ("PENDING000000001", "pending", None),
    ("RECEIVED00000001", "pending", None),
    ("PARTIAL000000001", "pending", None),
])
async def test_every_final_and_waiting_result_code_maps_to_one_outcome(psp, sim, stored_id, status, decline_code):
    result = await psp.submit(charge(stored_id))
    assert (result.status, result.decline_code, result.action_url) == (status, decline_code, None)
    [record] = await sim.charges()
    assert record["reference"] == result.psp_reference and len(result.psp_reference) == 16
    assert record["status"] == status


@pytest.mark.parametrize(("stored_id", "has_url"), [
    ("THREEDS000000001", True), ("PRESENT000000001", True), ("IDENTIFY00000001", False), ("CHALLENGE0000001", False),
])
async def test_shopper_actions_require_action_with_the_actions_url(psp, sim, stored_id, has_url):
    result = await psp.submit(charge(stored_id))
    assert result.status == "requires_action"
    assert (result.action_url is not None) == has_url
    if has_url:
        assert result.action_url.startswith(sim.url)


@pytest.mark.parametrize("option", ["apple_pay", "google_pay"])
async def test_wallets_pay_in_as_their_adyen_types(psp, sim, option):
    result = await psp.submit(charge("AUTHORISED000001", option=option))
    assert result.status == "succeeded"


async def test_a_resubmit_under_the_same_key_returns_the_first_payment(psp, sim):
    c = charge("AUTHORISED000001")
    first = await psp.submit(c)
    again = await psp.submit(c)
    status = await psp.status(c)
    assert first == again == status
    assert [r["reference"] for r in await sim.charges()] == [first.psp_reference]


async def test_the_same_key_with_another_body_is_refused_and_moves_no_more_money(psp, sim):
    c = charge("AUTHORISED000001")
    first = await psp.submit(c)
    with pytest.raises(PspRejected, match="704"):
        await psp.submit(msgspec.structs.replace(c, amount_minor=c.amount_minor + 1))
    assert [r["reference"] for r in await sim.charges()] == [first.psp_reference]


async def test_a_lost_answer_then_status_finds_exactly_one_payment(psp, sim):
    c = charge("AUTHORISED000001")
    await sim.faults(drop_after_charge=1)
    with pytest.raises(PspTransientError):
        await psp.submit(c)
    [made] = await sim.charges()  # the payment was made; its answer was lost
    result = await psp.status(c)
    assert (result.status, result.psp_reference) == ("succeeded", made["reference"])
    assert len(await sim.charges()) == 1


async def test_a_lost_decline_is_found_as_the_decline(psp, sim):
    c = charge("NOBALANCE0000012")
    await sim.faults(drop_after_charge=1)
    with pytest.raises(PspTransientError):
        await psp.submit(c)
    result = await psp.status(c)
    assert result.decline_code == "refused:12:Not enough balance"
    assert len(await sim.charges()) == 1


@pytest.mark.parametrize("fault", [{"outage": True}, {"error_rate": 1.0}, {"timeout": True}])
async def test_an_outage_or_a_timeout_is_transient_and_charges_nothing(psp, sim, fault):
    await sim.faults(**fault)
    with pytest.raises(PspTransientError):
        await psp.submit(charge("AUTHORISED000001"))
    await sim.call("DELETE", "/_sim/faults")
    assert await sim.charges() == []


async def test_unreachable_adyen_is_transient(adyen_settings):
    dead = msgspec.structs.replace(adyen_settings, adyen_checkout_base_url="http://127.0.0.1:9/checkout/v71")
    psp = adyen.AdyenPsp(dead)
    try:
        with pytest.raises(PspTransientError):
            await psp.submit(charge("AUTHORISED000001"))
    finally:
        await psp.close()


async def test_a_wrong_api_key_or_merchant_account_is_transient_not_a_decline(adyen_settings, sim):
    for change in ({"adyen_api_key": "AQE_wrong"}, {"adyen_merchant_account": "SomeoneElse"}):
        psp = adyen.AdyenPsp(msgspec.structs.replace(adyen_settings, **change))
        try:
            with pytest.raises(PspTransientError, match="HTTP 40[13]"):
                await psp.submit(charge("AUTHORISED000001"))
        finally:
            await psp.close()
    assert await sim.charges() == []


async def test_an_unknown_stored_method_is_rejected(psp, sim):
    with pytest.raises(PspRejected, match="800"):
        await psp.submit(charge("UNKNOWN000000001"))
    assert await sim.charges() == []


async def test_a_charge_it_cannot_send_is_rejected_and_status_says_no_payment(psp, sim):
    for c in (charge("AUTHORISED000001", customer_ref=None), charge("tok_card_ok"),
              charge("AUTHORISED000001", option="paypal")):
        with pytest.raises(PspRejected):
            await psp.submit(c)
        assert await psp.status(c) is None
    assert await sim.charges() == []


async def test_status_of_a_pending_payment_is_the_stale_first_answer_and_the_notification_is_the_truth(
        psp, sim, receiver):
    c = charge("PENDING000000001")
    first = await psp.submit(c)
    assert first.status == "pending"
    await sim.advance(sim_methods.PENDING_SETTLE_S)
    [event] = await receiver.wait_for("AUTHORISATION", c.idempotency_key)
    assert event.kind == "outcome" and event.result.status == "succeeded"
    assert event.psp_reference == first.psp_reference and event.amount_minor == c.amount_minor
    assert await psp.status(c) == first  # Adyen replays the first answer: still "pending"
    assert [r["status"] for r in await sim.charges()] == ["succeeded"]


async def test_a_received_payment_refused_later_arrives_as_a_declined_notification(psp, sim, receiver):
    c = charge("RECEIVED00000001")
    assert (await psp.submit(c)).status == "pending"
    await sim.advance(sim_methods.PENDING_SETTLE_S)
    [event] = await receiver.wait_for("AUTHORISATION", c.idempotency_key)
    assert (event.result.status, event.result.decline_code) == ("declined", "refused:Refused")


async def _through_3ds(action_url: str) -> URL:
    """The shopper's browser: open the 3-D Secure page; returns where it sends them back."""
    async with aiohttp.ClientSession() as browser, browser.get(action_url, allow_redirects=False) as page:
        assert page.status == 302, page.status
        return URL(page.headers["Location"])


async def test_redirect_then_payment_details_completes_the_payment(psp, sim, receiver):
    c = charge("THREEDS000000001", return_url="https://shop.example/back?order=7")
    first = await psp.submit(c)
    assert first.status == "requires_action"
    back = await _through_3ds(first.action_url)
    assert (back.host, back.query["order"]) == ("shop.example", "7")
    result = await psp.payment_details(c, {"redirectResult": back.query["redirectResult"]})
    assert (result.status, result.psp_reference) == ("succeeded", first.psp_reference)
    assert await psp.payment_details(c, {"redirectResult": back.query["redirectResult"]}) == result
    [event] = await receiver.wait_for("AUTHORISATION", c.idempotency_key)
    assert event.result.status == "succeeded"
    assert (await psp.status(c)).status == "requires_action"  # the stale first answer
    assert [r["status"] for r in await sim.charges()] == ["succeeded"]


async def test_a_failed_authentication_declines(psp, sim, receiver):
    c = charge("THREEDSFAIL00001")
    first = await psp.submit(c)
    back = await _through_3ds(first.action_url)
    assert back.query["order_id"] == c.idempotency_key  # the default returnUrl names the order
    result = await psp.payment_details(c, {"redirectResult": back.query["redirectResult"]})
    assert result.decline_code == "refused:11:3D Not Authenticated"
    [event] = await receiver.wait_for("AUTHORISATION", c.idempotency_key)
    assert event.result.status == "declined"


async def test_payment_details_with_an_unknown_redirect_result_is_rejected(psp, sim):
    with pytest.raises(PspRejected):
        await psp.payment_details(charge("THREEDS000000001"), {"redirectResult": "forged"})


@pytest.mark.parametrize(("stored_id", "event_type", "status", "decline_code", "wait_s"), [
    ("PAYOUTOK00000001", "PAYOUT_THIRDPARTY", "succeeded", None, 0),
    ("PAYOUTREFUSED001", "PAYOUT_THIRDPARTY", "declined", "refused:Refused", 0),
    ("PAYOUTDECLINED01", "PAYOUT_DECLINE", "declined", "payout_declined", 0),
    ("PAYOUTEXPIRE0001", "PAYOUT_EXPIRE", "declined", "payout_expired", sim_methods.PAYOUT_REVIEW_S),
])
async def test_a_payout_is_received_then_decided_by_its_notification(
        psp, sim, receiver, stored_id, event_type, status, decline_code, wait_s):
    c = charge(stored_id, direction="payout", option="bank_account")
    first = await psp.submit(c)
    assert first.status == "pending"
    assert await psp.status(c) == first
    if wait_s:
        await sim.advance(wait_s)
    [event] = await receiver.wait_for(event_type, c.idempotency_key)
    assert (event.kind, event.result.status, event.result.decline_code) == ("outcome", status, decline_code)
    assert event.psp_reference == first.psp_reference
    [record] = await sim.charges()
    assert (record["direction"], record["status"]) == ("payout", status)


async def test_a_chargeback_after_success_is_a_return_with_its_reason(psp, sim, receiver):
    c = charge("CHARGEBACK000001")
    paid = await psp.submit(c)
    assert paid.status == "succeeded"
    await sim.advance(sim_methods.CHARGEBACK_AFTER_S)
    [event] = await receiver.wait_for("CHARGEBACK", c.idempotency_key)
    assert (event.kind, event.return_code) == ("returned", "chargeback:Fraudulent transaction")
    assert event.psp_reference == paid.psp_reference
    [record] = await sim.charges()
    assert record["status"] == "returned"


def test_supports_cards_and_wallets_in_and_stored_cards_and_accounts_out(adyen_settings):
    psp = adyen.create(adyen_settings)
    assert psp.supports("payin", "card", "EUR") and psp.supports("payin", "apple_pay", "USD")
    assert psp.supports("payin", "google_pay", "JPY") and psp.supports("payout", "bank_account", "GBP")
    assert not psp.supports("payin", "paypal", "EUR") and not psp.supports("payin", "bank_account", "EUR")
    assert not psp.supports("payout", "apple_pay", "EUR") and not psp.supports("payin", "card", "XYZ")


def test_registered_with_its_token_shape_and_configuration_needs(adyen_settings):
    assert adapter_for("adyen", adyen_settings).name == "adyen"
    assert token_fits("adyen", "card", "8415718415172204") and token_fits("adyen", "apple_pay", "M5N7TQ4TG5PFWR50")
    assert not token_fits("adyen", "card", "tok_card_ok") and not token_fits("adyen", "paypal", "8415718415172204")
    assert adyen.missing(adyen_settings) is None
    assert "PAYCELL_ADYEN_HMAC_KEY" in adyen.missing(msgspec.structs.replace(adyen_settings, adyen_hmac_key=""))
    too_long = msgspec.structs.replace(adyen_settings, order_deadline_s=adyen.IDEMPOTENCY_WINDOW_S)
    assert "ORDER_DEADLINE" in adyen.missing(too_long)


@pytest.mark.parametrize("code", list(DRIVER.declines))
async def test_the_conformance_drivers_decline_tokens_give_their_codes(psp, sim, code):
    result = await psp.submit(charge(DRIVER.declines[code], currency=DRIVER.currency))
    assert (result.status, result.decline_code) == ("declined", code)


async def test_the_conformance_drivers_approval_passes_3ds(psp, sim, receiver):
    c = charge(DRIVER.action[1])
    first = await psp.submit(c)
    async with aiohttp.ClientSession() as browser:
        await DRIVER.approve(browser, first.action_url)
    [event] = await receiver.wait_for("AUTHORISATION", c.idempotency_key)
    assert event.result.status == "succeeded"


async def test_concurrent_submits_under_one_key_make_one_payment(psp, sim):
    c = charge("AUTHORISED000001")
    await sim.faults(latency_ms=50)  # all ten in flight at once
    results = await asyncio.gather(*(psp.submit(c) for _ in range(10)))
    assert len({r.psp_reference for r in results}) == 1
    assert len(await sim.charges()) == 1


async def test_status_of_a_key_adyen_never_saw_makes_the_payment_once_it_cannot_say_none(psp, sim):
    c = charge("AUTHORISED000001")
    first = await psp.status(c)  # Adyen has no lookup: the replay IS a submit
    assert first.status == "succeeded"
    assert await psp.submit(c) == first
    assert len(await sim.charges()) == 1
