"""The conformance driver's claims about the Stripe simulator hold (checked through the connector):
each decline token gives its code, the pending token settles within `settle_after_s`, the late
return comes within `return_after_s` with `return_code`, and `approve` completes the action."""
from __future__ import annotations

import json
import uuid

import pytest

from paycell.psp.base import Charge
from tests.psp.drivers.stripe import DRIVER


def charge(option: str, token: str) -> Charge:
    return Charge(idempotency_key=str(uuid.uuid4()), direction="payin", amount_minor=2_500,
                  currency=DRIVER.currency, instrument=token, payment_option=option)


async def test_the_ok_token_pays_in(psp, sim):
    assert (await psp.submit(charge(DRIVER.option, DRIVER.payin_ok))).status == "succeeded"
    assert DRIVER.payout_ok is None and not psp.supports("payout", DRIVER.option, DRIVER.currency)


@pytest.mark.parametrize("code", sorted(DRIVER.declines))
async def test_each_decline_token_gives_its_code(psp, sim, code):
    result = await psp.submit(charge(DRIVER.option, DRIVER.declines[code]))
    assert (result.status, result.decline_code) == ("declined", code)


async def test_the_pending_token_settles_within_settle_after_s(psp, sim):
    c = charge(*DRIVER.pending_ok)
    assert (await psp.submit(c)).status == "pending"
    await sim.advance_s(DRIVER.settle_after_s)
    assert (await psp.status(c)).status == "succeeded"


async def test_the_late_return_comes_within_return_after_s(psp, sim, receiver):
    c = charge(*DRIVER.late_return)
    await psp.submit(c)
    await sim.advance_s(DRIVER.settle_after_s)
    assert (await psp.status(c)).status == "succeeded"
    await sim.advance_s(DRIVER.return_after_s)
    headers, body = await receiver.wait_for(lambda b: json.loads(b)["type"] == "charge.dispute.created")
    [event] = await psp.verify_webhook(headers, body)
    assert (event.kind, event.return_code) == ("returned", DRIVER.return_code)


async def test_approve_completes_the_action(psp, sim, http):
    c = charge(*DRIVER.action)
    result = await psp.submit(c)
    assert result.status == "requires_action"
    await DRIVER.approve(http, result.action_url)
    assert (await psp.status(c)).status == "succeeded"
