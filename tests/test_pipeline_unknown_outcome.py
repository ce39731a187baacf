"""Unknown is not declined: after an ambiguous submit, only the PSP's explicit decline fails an
order. A 401 from a status call (an API key mid-rotation), a 404 from a stale replica followed by
a 409 on re-submit, or any other refusal keeps a pay-out's reserve; the order ends succeeded once
the PSP answers, or in needs_attention when retries run out, never failed and released while the
PSP may have paid."""
from __future__ import annotations

import pytest

from tests.helpers import assert_ledger_clean, final_payment, new_user, pay, psp_stats, wallet

pytestmark = pytest.mark.usefixtures("worker")


async def _funded(api, settings, amount: str) -> str:
    user = new_user()
    status, body = await pay(api, settings, user, "tok_card_ok", f"wallet:{user}", amount, "card", wait_s=10)
    assert status == 201 and body["status"] == "succeeded", body
    return user


def _types(payment: dict) -> list[str]:
    return [e["type"] for e in payment["events"]]


@pytest.mark.parametrize("token", ["tok_bank_rotate", "tok_bank_stale"])
async def test_a_payout_the_psp_paid_is_never_released_on_a_4xx_after_a_lost_answer(api, settings, pool, psp_sim,
                                                                                   token):
    """rotate: charged, answer lost, then 401 twice from the status call; stale: charged, answer
    lost, a 404 from the status call, then 409 on re-submit. Both end paid, with one charge."""
    user = await _funded(api, settings, "30.00")
    status, body = await pay(api, settings, user, f"wallet:{user}", token, "12.00", "bank_account")
    assert status == 202, body
    final = await final_payment(api, settings, user, body["payment_id"], timeout_s=40)
    assert final["status"] == "succeeded", final
    assert "order.released" not in _types(final)
    stats = await psp_stats(psp_sim, final["orders"][0]["payment_order_id"])
    assert stats["charged"] is True
    assert await wallet(api, settings, user) == {"USD": ("18.00", "0.00")}
    await assert_ledger_clean(pool)


async def test_a_payout_whose_outcome_stays_unknown_keeps_its_reserve_and_needs_attention(api, settings, pool,
                                                                                        psp_sim):
    """keyfail: charged, answer lost, and every status call answers 401 afterwards."""
    user = await _funded(api, settings, "30.00")
    status, body = await pay(api, settings, user, f"wallet:{user}", "tok_bank_keyfail", "12.00", "bank_account")
    assert status == 202, body
    final = await final_payment(api, settings, user, body["payment_id"], timeout_s=40)
    assert final["status"] == "needs_attention" and final["failure_code"] == "retries_exhausted", final
    assert "order.released" not in _types(final)
    assert (await psp_stats(psp_sim, final["orders"][0]["payment_order_id"]))["charged"] is True
    assert await wallet(api, settings, user) == {"USD": ("18.00", "12.00")}  # the reserve is kept
    await assert_ledger_clean(pool)


@pytest.mark.parametrize("kind", ["payin", "payout"])
async def test_a_request_refused_on_its_first_attempt_fails_once_the_psp_says_it_holds_no_charge(
        api, settings, pool, psp_sim, kind):
    user = await _funded(api, settings, "30.00")
    src, dst, option = (("tok_card_reject", f"wallet:{user}", "card") if kind == "payin"
                        else (f"wallet:{user}", "tok_bank_reject", "bank_account"))
    status, body = await pay(api, settings, user, src, dst, "5.00", option, wait_s=10)
    assert status == 201 and body["status"] == "failed" and body["failure_code"] == "psp_rejected", body
    assert (await psp_stats(psp_sim, body["orders"][0]["payment_order_id"]))["charged"] is False
    assert await wallet(api, settings, user) == {"USD": ("30.00", "0.00")}
    if kind == "payout":
        assert "order.released" in _types(await final_payment(api, settings, user, body["payment_id"]))
    await assert_ledger_clean(pool)
