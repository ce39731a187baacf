"""PayPal pay-outs (Payouts v1) through the connector against its simulator over real HTTP."""
from __future__ import annotations

import msgspec
import pytest

from paycell.psp.base import PspRejected, PspTransientError
from paycell.psp.paypal.connector import TOKEN_PATTERNS
from tests.psp.paypal.conftest import payout


async def test_a_payout_to_a_paypal_account_succeeds(sim, psp):
    charge = payout()
    result = await psp.submit(charge)
    assert result.status == "succeeded"
    [record] = await sim.charges()
    assert (record["reference"], record["order_key"], record["direction"], record["status"]) == (
        result.psp_reference, charge.idempotency_key, "payout", "succeeded")
    assert (await psp.status(msgspec.structs.replace(charge, psp_reference=result.psp_reference))).status == "succeeded"


async def test_a_payout_to_a_paypal_id_succeeds(sim, psp):
    assert (await psp.submit(payout("AB12CD34EF56G"))).status == "succeeded"


async def test_a_failed_payout_item_is_a_decline_with_its_error_name(sim, psp):
    result = await psp.submit(payout("payout-failed@example.com"))
    assert (result.status, result.decline_code) == ("declined", "receiver_account_locked")
    blocked = await psp.submit(payout("payout-blocked@example.com"))
    assert (blocked.status, blocked.decline_code) == ("declined", "risk_decline")


async def test_an_unclaimed_payout_waits_and_is_returned_after_thirty_days(sim, psp):
    charge = payout("payout-unclaimed@example.com")
    assert (await psp.submit(charge)).status == "pending"
    await sim.advance(30 * 86_400)
    result = await psp.status(charge)
    assert (result.status, result.decline_code) == ("declined", "receiver_unregistered")


async def test_a_pending_payout_succeeds_when_the_clock_passes(sim, psp):
    charge = payout("payout-pending@example.com")
    assert (await psp.submit(charge)).status == "pending"
    await sim.advance(86_400)
    assert (await psp.status(charge)).status == "succeeded"


async def test_a_lost_payout_answer_then_status_finds_the_one_batch(sim, psp):
    charge = payout()
    await sim.faults(drop_after_charge=1)
    with pytest.raises(PspTransientError):
        await psp.submit(charge)
    found = await psp.status(charge)
    assert found.status == "succeeded"
    assert [c["reference"] for c in await sim.charges()] == [found.psp_reference]
    assert len(sim.world.movements) == 1


async def test_a_batch_made_under_another_request_id_is_found_through_the_duplicate_refusal(sim, psp):
    charge = payout()
    token = await psp.client._access_token()
    body = msgspec.json.encode(psp._payout_request(charge))
    status, made = await sim.call("POST", "/v1/payments/payouts", data=body,
                                  headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert status == 201
    result = await psp.submit(charge)  # PayPal refuses the sender_batch_id twice and links the first
    assert (result.status, result.psp_reference) == ("succeeded", made["batch_header"]["payout_batch_id"])
    assert len(await sim.charges()) == 1


async def test_payout_outage_is_transient(sim, psp):
    await sim.faults(outage=True)
    with pytest.raises(PspTransientError):
        await psp.submit(payout())
    assert await sim.charges() == []


async def test_a_payee_that_is_no_paypal_account_is_refused_before_sending(sim, psp):
    with pytest.raises(PspRejected):
        await psp.submit(payout("not an account"))
    assert await psp.status(payout("not an account")) is None  # never sent: PayPal holds none


def test_paypal_tokens_are_emails_or_paypal_ids():
    fits = TOKEN_PATTERNS["paypal"].fullmatch
    assert fits("payee@example.com") and fits("first.last+tag@mail.example.co.uk") and fits("AB12CD34EF56G")
    assert not fits("tok_paypal_ok") and not fits("payee@") and not fits("ab12cd34ef56g") and not fits("a@b")


async def test_the_access_token_is_cached_and_fetched_again_after_a_401(sim, psp):
    for _ in range(3):
        await psp.submit(payout())
    _, tokens = await sim.call("GET", "/_sim/tokens")
    assert tokens["issued"] == 1 and psp.client.tokens_fetched == 1
    await sim.call("DELETE", "/_sim/tokens")  # PayPal revoked it early
    assert (await psp.submit(payout())).status == "succeeded"
    _, tokens = await sim.call("GET", "/_sim/tokens")
    assert tokens["issued"] == 2 and psp.client.tokens_fetched == 2


async def test_wrong_credentials_are_transient_and_move_nothing(sim, sim_settings):
    from paycell.psp.paypal.connector import PaypalPsp
    psp = PaypalPsp(msgspec.structs.replace(sim_settings, paypal_client_secret="not-the-secret"))
    try:
        with pytest.raises(PspTransientError, match="invalid_client"):
            await psp.submit(payout())
    finally:
        await psp.close()
    assert await sim.charges() == []
