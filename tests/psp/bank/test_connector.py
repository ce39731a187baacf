"""The bank connector speaks Modern Treasury's Payment Orders API to the simulator, whose ACH rail
settles on business days and returns with R-codes as its test accounts say."""
from __future__ import annotations

import datetime

import aiohttp
import msgspec
import pytest

from paycell.psp.bank import rail
from paycell.psp.base import PspRejected, PspTransientError
from tests.psp.bank.conftest import OK, charge

FRIDAY, SATURDAY, SUNDAY, MONDAY, TUESDAY, WEDNESDAY = 4, 5, 6, 0, 1, 2
HOUR_S = 3_600


async def test_a_pay_in_is_pending_over_a_weekend_and_completes_two_business_days_after_the_cutoff(bank, psp):
    friday_s = await bank.advance_to_next(FRIDAY, datetime.time(21, 0))  # after Friday's cut-off
    c = charge("payin")
    first = await psp.submit(c)
    assert first.status == "pending" and first.psp_reference
    [record] = await bank.charges()
    assert (record["order_key"], record["direction"], record["amount_minor"], record["status"]) == (
        c.idempotency_key, "payin", 12_34, "pending")

    await bank.advance_to(friday_s + 2 * 24 * HOUR_S)  # Sunday: nothing leaves on a weekend
    assert (await psp.status(c)).status == "pending"
    assert bank.received.events() == []
    monday_file_s = friday_s + 2 * 24 * HOUR_S + 23 * HOUR_S  # Monday 20:00 UTC
    await bank.advance_to(monday_file_s + 1)
    assert (await psp.status(c)).status == "pending"
    assert await bank.wait_for_events(2) == ["begin_processing", "finish_processing"]

    wednesday_posting_s = monday_file_s + 42 * HOUR_S  # two business days later, 14:00 UTC
    await bank.advance_to(wednesday_posting_s - 60)
    assert (await psp.status(c)).status == "pending"
    await bank.advance_to(wednesday_posting_s)
    done = await psp.status(c)
    assert (done.status, done.psp_reference) == ("succeeded", first.psp_reference)
    assert await bank.wait_for_events(3) == ["begin_processing", "finish_processing", "completed"]
    assert [r["status"] for r in await bank.charges()] == ["succeeded"]


async def test_a_pay_out_is_an_ach_credit_that_settles_the_next_business_day(bank, psp, settings):
    tuesday_s = await bank.advance_to_next(TUESDAY, datetime.time(10, 0))  # before the cut-off
    c = charge("payout", amount_minor=50_00)
    result = await psp.submit(c)
    assert result.status == "pending"
    async with bank.http.get(f"{bank.url}/api/payment_orders/{result.psp_reference}",
                             headers={"Authorization": aiohttp.encode_basic_auth(settings.bank_organization_id,
                                                                                settings.bank_api_key)}) as resp:
        order = await resp.json()
    assert (order["type"], order["direction"], order["amount"], order["currency"]) == ("ach", "credit", 50_00, "USD")
    assert order["metadata"]["paycell_order_id"] == c.idempotency_key
    await bank.advance_to(tuesday_s + 28 * HOUR_S - 1)  # Wednesday 13:59:59
    assert (await psp.status(c)).status == "pending"
    await bank.advance_to(tuesday_s + 28 * HOUR_S)
    assert (await psp.status(c)).status == "succeeded"
    [record] = await bank.charges()
    assert (record["direction"], record["status"]) == ("payout", "succeeded")


EARLY_RETURNS = [("10001", "R01", "insufficient_funds"), ("10002", "R02", "account_closed"),
                 ("10003", "R03", "no_account"), ("10004", "R04", "invalid_account_number"),
                 ("10008", "R08", "payment_stopped"), ("10016", "R16", "account_frozen"),
                 ("10020", "R20", "bank_account_restricted")]


@pytest.mark.parametrize(("account", "code", "decline_code"), EARLY_RETURNS)
async def test_a_return_before_settlement_is_a_decline_with_its_reason(bank, psp, account, code, decline_code):
    monday_s = await bank.advance_to_next(MONDAY, datetime.time(9, 0))
    c = charge("payin", account=account)
    assert (await psp.submit(c)).status == "pending"
    await bank.advance_to(monday_s + 2 * 24 * HOUR_S + 5 * HOUR_S)  # Wednesday 14:00: the settlement day
    result = await psp.status(c)
    assert (result.status, result.decline_code) == ("declined", decline_code)
    assert await bank.wait_for_events(3) == ["begin_processing", "finish_processing", "returned"]
    [record] = await bank.charges()
    assert (record["status"], record["return_code"]) == ("declined", code)
    # Its webhook is the charge's outcome, not a return of money paycell had.
    headers, body = bank.received.deliveries[-1]
    [event] = await psp.verify_webhook(headers, body)
    assert (event.kind, event.result.status, event.result.decline_code) == ("outcome", "declined", decline_code)
    assert event.order_id == c.idempotency_key


@pytest.mark.parametrize(("account", "code"), [("10007", "R07"), ("10010", "R10"), ("10029", "R29")])
async def test_an_unauthorised_debit_completes_then_comes_back_as_a_late_return(bank, psp, account, code):
    monday_s = await bank.advance_to_next(MONDAY, datetime.time(9, 0))
    c = charge("payin", account=account)
    await psp.submit(c)
    settled_s = monday_s + 2 * 24 * HOUR_S + 5 * HOUR_S
    await bank.advance_to(settled_s)
    assert (await psp.status(c)).status == "succeeded"
    await bank.advance_to(settled_s + rail.LATE_RETURN_S - 60)
    assert (await psp.status(c)).status == "succeeded"
    await bank.advance_to(settled_s + rail.LATE_RETURN_S)
    assert await bank.wait_for_events(4) == ["begin_processing", "finish_processing", "completed", "returned"]
    headers, body = bank.received.deliveries[-1]
    [event] = await psp.verify_webhook(headers, body)
    assert (event.kind, event.return_code, event.order_id, event.amount_minor, event.currency) == (
        "returned", code, c.idempotency_key, 12_34, "USD")
    [record] = await bank.charges()
    assert (record["status"], record["return_code"]) == ("returned", code)
    # Polled afterwards, the payment order reads as money that did not stay.
    assert (await psp.status(c)).decline_code == "debit_not_authorized"


async def test_an_entry_the_bank_refuses_fails_at_the_cutoff(bank, psp):
    monday_s = await bank.advance_to_next(MONDAY, datetime.time(9, 0))
    c = charge("payout", account="111111110")
    await psp.submit(c)
    await bank.advance_to(monday_s + 11 * HOUR_S)
    result = await psp.status(c)
    assert (result.status, result.decline_code) == ("declined", "payment_failed")
    assert await bank.wait_for_events(1) == ["failed"]


async def test_a_resubmit_with_the_same_key_makes_one_payment_order(bank, psp):
    c = charge("payin")
    first = await psp.submit(c)
    again = await psp.submit(c)
    assert again.psp_reference == first.psp_reference
    assert len(await bank.charges()) == 1
    # The same key with another body is refused, and moves nothing.
    with pytest.raises(PspRejected):
        await psp.submit(msgspec.structs.replace(c, amount_minor=c.amount_minor + 1))
    assert len(await bank.charges()) == 1


async def test_after_a_lost_response_status_finds_exactly_the_one_payment_order(bank, psp):
    c = charge("payout")
    assert await psp.status(c) is None  # nothing yet: the router may go elsewhere
    await bank.sim("POST", "faults", {"drop_after_charge": 1})
    with pytest.raises(PspTransientError):
        await psp.submit(c)
    [record] = await bank.charges()
    found = await psp.status(c)  # no psp_reference known: found by the order id in its metadata
    assert (found.status, found.psp_reference) == ("pending", record["reference"])
    assert (await psp.submit(c)).psp_reference == record["reference"]
    assert len(await bank.charges()) == 1


async def test_status_by_a_known_reference_and_none_for_an_unknown_order(bank, psp):
    c = charge("payin")
    made = await psp.submit(c)
    known = msgspec.structs.replace(c, psp_reference=made.psp_reference)
    assert (await psp.status(known)).psp_reference == made.psp_reference
    assert await psp.status(charge("payin")) is None
    # A reference that is not this order's payment order is not taken for it.
    other = charge("payin", reference=made.psp_reference)
    assert await psp.status(other) is None


@pytest.mark.parametrize("fault", [{"outage": True}, {"error_rate": 1.0}])
async def test_an_outage_is_a_transient_failure_and_moves_nothing(bank, psp, fault):
    await bank.sim("POST", "faults", fault)
    c = charge("payin")
    with pytest.raises(PspTransientError):
        await psp.submit(c)
    with pytest.raises(PspTransientError):
        await psp.status(c)
    assert await bank.charges() == []


async def test_a_hanging_bank_is_a_transient_failure(bank, psp):
    await bank.sim("POST", "faults", {"timeout": True})
    with pytest.raises(PspTransientError):
        await psp.submit(charge("payin"))


async def test_wrong_credentials_are_transient_and_an_unknown_account_is_rejected(bank, psp, settings):
    from paycell.psp import registry
    wrong = registry.adapter_for("bank", msgspec.structs.replace(settings, bank_api_base_url=bank.url,
                                                                 bank_api_key="bank_sim_rotated"))
    try:
        with pytest.raises(PspTransientError, match="401"):
            await wrong.submit(charge("payin"))
    finally:
        await wrong.close()
    with pytest.raises(PspRejected, match="receiving_account_id"):
        await psp.submit(msgspec.structs.replace(charge("payin"), instrument="ea000000-0000-4000-8000-000000000042"))
    assert await bank.charges() == []


async def test_what_the_rail_cannot_carry_is_refused_before_any_call(bank, psp):
    with pytest.raises(PspRejected, match="USD"):
        await psp.submit(charge("payin", currency="EUR"))
    with pytest.raises(PspRejected, match="external account"):
        await psp.submit(msgspec.structs.replace(charge("payin"), instrument="tok_bank_ok"))
    assert await bank.charges() == []
    assert psp.supports("payin", "bank_account", "USD") and psp.supports("payout", "bank_account", "USD")
    assert not psp.supports("payin", "card", "USD")
    assert not psp.supports("payin", "bank_account", "EUR")


def test_the_instrument_is_an_external_account_id():
    from paycell.psp import registry
    assert registry.token_fits("bank", "bank_account", OK)
    assert not registry.token_fits("bank", "bank_account", "tok_bank_ok")
    assert not registry.token_fits("bank", "card", OK)


async def test_the_conformance_driver_s_tokens_do_what_it_says(bank, psp):
    """Each decline token declines with its code, the pending token succeeds and the late-return
    token comes back with its code, within the driver's own delays (from a Friday after the cut-off,
    the slowest start)."""
    from tests.psp.drivers.bank import DRIVER
    friday_s = await bank.advance_to_next(FRIDAY, datetime.time(20, 0, 1))
    declines = {code: charge("payin") for code in DRIVER.declines}
    declines = {code: msgspec.structs.replace(c, instrument=DRIVER.declines[code]) for code, c in declines.items()}
    ok = msgspec.structs.replace(charge("payin"), instrument=DRIVER.pending_ok[1])
    late = msgspec.structs.replace(charge("payin"), instrument=DRIVER.late_return[1])
    for c in (*declines.values(), ok, late):
        assert (await psp.submit(c)).status == "pending"
    await bank.advance_to(friday_s + DRIVER.settle_after_s)
    for code, c in declines.items():
        assert (await psp.status(c)).decline_code == code
    assert (await psp.status(ok)).status == "succeeded"
    assert (await psp.status(late)).status == "succeeded"
    await bank.advance_to(friday_s + DRIVER.return_after_s)
    assert (await psp.status(late)).status == "declined"
    [record] = [r for r in await bank.charges() if r["order_key"] == late.idempotency_key]
    assert (record["status"], record["return_code"]) == ("returned", DRIVER.return_code)
