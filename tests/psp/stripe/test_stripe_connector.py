"""The Stripe connector against paycell's Stripe simulator, over real HTTP: outcomes, declines,
idempotency, lost answers, outages, 3-D Secure, ACH settlement, failures and late returns."""
from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from paycell.psp.base import Charge, PspRejected, PspTransientError
from paycell.psp.registry import adapter_for, token_fits
from paycell.psp.stripe import connector, sim_state

DAY_S = 86_400


def charge(instrument: str, *, option: str = "card", amount_minor: int = 1_250, currency: str = "USD",
           **kwargs) -> Charge:
    return Charge(idempotency_key=str(uuid.uuid4()), direction="payin", amount_minor=amount_minor,
                  currency=currency, instrument=instrument, payment_option=option, **kwargs)


def event_of(order_id: str, type_: str):
    def matches(body: bytes) -> bool:
        event = json.loads(body)
        obj = event["data"]["object"]
        return event["type"] == type_ and obj.get("metadata", {}).get("paycell_order_id") == order_id
    return matches


async def test_a_card_payment_succeeds_once_and_the_simulator_records_it(psp, sim):
    c = charge("pm_card_visa", customer_ref="user-1")
    result = await psp.submit(c)
    assert result.status == "succeeded" and result.psp_reference.startswith("pi_")
    [recorded] = await sim.charges(c.idempotency_key)
    assert recorded["reference"] == result.psp_reference and recorded["status"] == "succeeded"
    assert (recorded["amount_minor"], recorded["currency"]) == (1_250, "USD")
    assert recorded["fee_minor"] == 66  # 2.9% of 12.50 rounded, plus 0.30


@pytest.mark.parametrize("instrument, code", [
    ("pm_card_visa_chargeDeclined", "generic_decline"),
    ("pm_card_chargeCustomerFail", "generic_decline"),
    ("pm_card_visa_chargeDeclinedInsufficientFunds", "insufficient_funds"),
    ("pm_card_visa_chargeDeclinedLostCard", "lost_card"),
    ("pm_card_visa_chargeDeclinedStolenCard", "stolen_card"),
    ("pm_card_chargeDeclinedFraudulent", "fraudulent"),
    ("pm_card_chargeDeclinedExpiredCard", "expired_card"),
    ("pm_card_chargeDeclinedIncorrectCvc", "incorrect_cvc"),
    ("pm_card_chargeDeclinedProcessingError", "processing_error"),
])
async def test_a_402_card_error_is_a_decline_with_stripes_code(psp, sim, instrument, code):
    c = charge(instrument)
    result = await psp.submit(c)
    assert (result.status, result.decline_code) == ("declined", code)
    [recorded] = await sim.charges(c.idempotency_key)
    assert recorded["reference"] == result.psp_reference and recorded["status"] == "declined"
    assert await psp.status(c) == result  # asked again (replayed under the key): the same decline


async def test_apple_pay_and_google_pay_are_card_payment_methods(psp, sim):
    for option in ("apple_pay", "google_pay"):
        assert (await psp.submit(charge("pm_card_visa", option=option))).status == "succeeded"


async def test_a_resubmit_under_the_same_key_makes_one_payment_intent(psp, sim):
    c = charge("pm_card_visa")
    first = await psp.submit(c)
    again = await psp.submit(c)
    assert again == first
    assert len(await sim.charges(c.idempotency_key)) == 1


async def test_the_same_key_with_other_parameters_is_refused_and_charges_nothing_more(psp, sim):
    c = charge("pm_card_visa")
    await psp.submit(c)
    with pytest.raises(PspRejected, match="idempotency|same parameters"):
        await psp.submit(Charge(**{**{f: getattr(c, f) for f in c.__struct_fields__}, "amount_minor": 9_999}))
    [recorded] = await sim.charges(c.idempotency_key)
    assert recorded["amount_minor"] == 1_250


async def test_after_a_lost_response_status_finds_exactly_one_payment(psp, sim):
    """The answer is dropped after Stripe made the payment; the search index has not caught up
    yet, so `status` replays the create under the same key and Stripe answers with the first."""
    c = charge("pm_card_visa")
    await sim.faults(drop_after_charge=1)
    with pytest.raises(PspTransientError):
        await psp.submit(c)
    [made] = await sim.charges(c.idempotency_key)
    found = await psp.status(c)
    assert found is not None and found.status == "succeeded" and found.psp_reference == made["reference"]
    assert len(await sim.charges(c.idempotency_key)) == 1


async def test_status_finds_the_payment_through_search_once_indexed(psp, sim, http, settings):
    c = charge("pm_usBankAccount_success", option="bank_account")
    await sim.faults(drop_after_charge=1)
    with pytest.raises(PspTransientError):
        await psp.submit(c)
    await sim.advance_s(sim_state.SEARCH_LAG_S + 1)
    query = f"metadata['paycell_order_id']:'{c.idempotency_key}'"
    async with http.get(f"{settings.stripe_api_base_url}/v1/payment_intents/search", params={"query": query},
                        headers={"Authorization": f"Bearer {settings.stripe_api_key}"}) as response:
        assert [i["id"] for i in (await response.json())["data"]] == [(await sim.charges())[0]["reference"]]
    found = await psp.status(c)
    assert found is not None and found.status == "pending"
    assert len(await sim.charges(c.idempotency_key)) == 1


async def test_status_by_reference_reads_the_intent_as_it_is_now(psp, sim):
    c = charge("pm_usBankAccount_success", option="bank_account")
    pending = await psp.submit(c)
    await sim.advance_s(7 * DAY_S)
    now = await psp.status(Charge(**{**{f: getattr(c, f) for f in c.__struct_fields__},
                                     "psp_reference": pending.psp_reference}))
    assert now is not None and now.status == "succeeded" and now.psp_reference == pending.psp_reference


async def test_status_is_none_only_when_stripe_refuses_the_request_and_so_holds_nothing(psp, sim):
    c = charge("pm_card_unknownToStripe")
    assert await psp.status(c) is None
    assert await sim.charges() == []


async def test_a_payout_is_refused_and_stripe_holds_none(psp, sim):
    payout = Charge(idempotency_key=str(uuid.uuid4()), direction="payout", amount_minor=500, currency="USD",
                    instrument="pm_card_visa")
    with pytest.raises(PspRejected, match="Connect"):
        await psp.submit(payout)
    assert await psp.status(payout) is None
    assert await sim.charges() == []


async def test_an_outage_is_transient_and_charges_nothing(psp, sim):
    c = charge("pm_card_visa")
    await sim.faults(outage=True)
    with pytest.raises(PspTransientError, match="503"):
        await psp.submit(c)
    with pytest.raises(PspTransientError):
        await psp.status(c)
    assert await sim.charges() == []


async def test_a_timeout_is_transient_and_status_then_finds_the_one_payment(psp, sim, settings):
    """The answer comes after the client gave up (the kit's `timeout` fault would hang the
    simulator's handler for minutes, holding up its shutdown; latency past the timeout is the
    same to the client and lets the payment be made)."""
    c = charge("pm_card_visa")
    await sim.faults(latency_ms=int(settings.psp_timeout_s * 1000) + 500)
    with pytest.raises(PspTransientError, match="TimeoutError|APIConnectionError|Network"):
        await psp.submit(c)
    await sim.call("DELETE", "/_sim/faults")
    await asyncio.sleep(1)  # the simulator finishes the slow request
    found = await psp.status(c)
    assert found is not None and found.status == "succeeded"
    assert len(await sim.charges(c.idempotency_key)) == 1


async def test_a_refused_api_key_is_transient_not_a_rejection(settings, sim):
    adapter = connector.StripePsp(api_base_url=settings.stripe_api_base_url, api_key="sk_test_wrong",
                                  webhook_secret=settings.stripe_webhook_secret, timeout_s=2, return_url=None)
    try:
        with pytest.raises(PspTransientError, match="401"):
            await adapter.submit(charge("pm_card_visa"))
    finally:
        await adapter.close()
    assert await sim.charges() == []


async def test_an_unknown_payment_method_is_rejected(psp, sim):
    with pytest.raises(PspRejected, match="No such PaymentMethod"):
        await psp.submit(charge("pm_card_unknownToStripe"))


async def test_three_d_secure_requires_action_then_succeeds_once_the_customer_authenticates(
        psp, sim, http, receiver, settings):
    c = charge("pm_card_threeDSecure2Required")
    result = await psp.submit(c)
    assert result.status == "requires_action" and result.action_url
    assert (await psp.status(c)).status == "requires_action"
    async with http.get(result.action_url, allow_redirects=False) as response:
        assert response.status == 302
        assert response.headers["Location"].startswith(settings.psp_return_url)
    done = await psp.status(c)
    assert done is not None and (done.status, done.psp_reference) == ("succeeded", result.psp_reference)
    headers, body = await receiver.wait_for(event_of(c.idempotency_key, "payment_intent.succeeded"))
    [event] = await psp.verify_webhook(headers, body)
    assert event.kind == "outcome" and event.result.status == "succeeded" and event.order_id == c.idempotency_key
    assert [x["status"] for x in await sim.charges(c.idempotency_key)] == ["succeeded"]


async def test_three_d_secure_failed_is_a_decline(psp, sim, http):
    c = charge("pm_card_authenticationRequired")
    result = await psp.submit(c)
    async with http.get(result.action_url + "&outcome=fail", allow_redirects=False) as response:
        assert response.status == 302
    assert await psp.status(c) == result.__class__(status="declined", psp_reference=result.psp_reference,
                                                   decline_code="payment_intent_authentication_failure")


async def test_three_d_secure_then_declined_by_the_issuer(psp, sim, http):
    c = charge("pm_card_authenticationRequiredChargeDeclinedInsufficientFunds")
    result = await psp.submit(c)
    async with http.get(result.action_url, allow_redirects=False):
        pass
    done = await psp.status(c)
    assert (done.status, done.decline_code) == ("declined", "insufficient_funds")


async def test_ach_stays_processing_for_business_days_then_settles(psp, sim, receiver):
    c = charge("pm_usBankAccount_success", option="bank_account", amount_minor=100_000)
    assert (await psp.submit(c)).status == "pending"
    await sim.advance_s(DAY_S)
    assert (await psp.status(c)).status == "pending"
    await sim.advance_s(6 * DAY_S)  # four business days have passed, whatever the weekday
    assert (await psp.status(c)).status == "succeeded"
    for type_, status in (("payment_intent.processing", "pending"), ("payment_intent.succeeded", "succeeded")):
        headers, body = await receiver.wait_for(event_of(c.idempotency_key, type_))
        [event] = await psp.verify_webhook(headers, body)
        assert (event.kind, event.result.status, event.amount_minor, event.currency) == (
            "outcome", status, 100_000, "USD")
    [recorded] = await sim.charges(c.idempotency_key)
    assert (recorded["status"], recorded["fee_minor"]) == ("succeeded", 500)  # 0.8%, capped at 5.00


@pytest.mark.parametrize("instrument, code, r_code", [
    ("pm_usBankAccount_insufficientFunds", "insufficient_funds", "R01"),
    ("pm_usBankAccount_accountClosed", "account_closed", "R02"),
    ("pm_usBankAccount_noAccount", "no_account", "R03"),
    ("pm_usBankAccount_invalidAccountNumber", "invalid_account_number", "R04"),
    ("pm_usBankAccount_debitNotAuthorized", "debit_not_authorized", "R10"),
])
async def test_ach_failures_decline_after_processing_with_the_return_code(psp, sim, receiver, instrument, code,
                                                                          r_code):
    c = charge(instrument, option="bank_account")
    assert (await psp.submit(c)).status == "pending"
    await sim.advance_s(5 * DAY_S)
    result = await psp.status(c)
    assert (result.status, result.decline_code) == ("declined", code)
    headers, body = await receiver.wait_for(event_of(c.idempotency_key, "payment_intent.payment_failed"))
    [event] = await psp.verify_webhook(headers, body)
    assert event.result == result
    [recorded] = await sim.charges(c.idempotency_key)
    assert (recorded["status"], recorded["return_code"]) == ("declined", r_code)


async def test_an_ach_return_after_success_arrives_as_a_dispute(psp, sim, receiver):
    c = charge("pm_usBankAccount_lateReturn", option="bank_account", amount_minor=4_200)
    pending = await psp.submit(c)
    await sim.advance_s(7 * DAY_S)
    assert (await psp.status(c)).status == "succeeded"
    await sim.advance_s(5 * DAY_S)
    headers, body = await receiver.wait_for(lambda b: json.loads(b)["type"] == "charge.dispute.created")
    [event] = await psp.verify_webhook(headers, body)
    assert (event.kind, event.return_code, event.psp_reference) == ("returned", "R10", pending.psp_reference)
    assert (event.amount_minor, event.currency) == (4_200, "USD")
    [recorded] = await sim.charges(c.idempotency_key)
    assert (recorded["status"], recorded["return_code"]) == ("returned", "R10")


async def test_the_settlement_report_lists_the_days_balance_changes_in_major_units(psp, sim):
    c = charge("pm_card_visa", amount_minor=10_000)
    result = await psp.submit(c)
    clock = await sim.call("GET", "/_sim/clock")
    import datetime
    day = datetime.datetime.fromtimestamp(clock["now_s"], datetime.timezone.utc).date()
    text = await sim.call("GET", f"/_sim/reports?date={day.isoformat()}")
    header, *rows = [line.split(",") for line in text.strip().splitlines()]
    assert header[:9] == ["balance_transaction_id", "created_utc", "available_on_utc", "currency", "gross", "fee",
                          "net", "reporting_category", "description"]
    [row] = [dict(zip(header, r)) for r in rows if r[header.index("payment_intent_id")] == result.psp_reference]
    assert (row["currency"], row["gross"], row["fee"], row["net"], row["reporting_category"]) == (
        "usd", "100.00", "3.20", "96.80", "charge")
    assert row["payment_metadata[paycell_order_id]"] == c.idempotency_key


def test_supports_card_wallet_and_ach_pay_ins_but_no_pay_outs(settings):
    psp = connector.create(settings)
    assert psp.supports("payin", "card", "USD") and psp.supports("payin", "apple_pay", "JPY")
    assert psp.supports("payin", "bank_account", "USD") and not psp.supports("payin", "bank_account", "EUR")
    assert not psp.supports("payout", "card", "USD") and not psp.supports("payout", "bank_account", "USD")
    assert not psp.supports("payin", "paypal", "USD") and not psp.supports("payin", "card", "KWD")


def test_the_registry_knows_the_connector_and_its_tokens(settings):
    assert adapter_for("stripe", settings).name == "stripe"
    assert token_fits("stripe", "card", "pm_card_visa") and token_fits("stripe", "google_pay", "pm_card_visa")
    assert token_fits("stripe", "card", "pm_1Q0PsIJvEtkwdCNYMSaVuRz6")
    assert token_fits("stripe", "bank_account", "pm_usBankAccount_success")
    assert not token_fits("stripe", "bank_account", "pm_card_visa") and not token_fits("stripe", "card", "tok_card_ok")
    assert not token_fits("stripe", "paypal", "pm_card_visa")


def test_missing_names_the_unset_secrets(settings):
    assert connector.missing(settings) is None
    bare = settings.__class__(**{**{f: getattr(settings, f) for f in settings.__struct_fields__},
                                 "stripe_api_key": "", "stripe_webhook_secret": ""})
    assert connector.missing(bare) == "PAYCELL_STRIPE_API_KEY, PAYCELL_STRIPE_WEBHOOK_SECRET"
