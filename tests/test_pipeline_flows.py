"""Each flow end to end: API -> Dramatiq worker -> PSP simulator over HTTP -> ledger, on each broker
(Redis and RabbitMQ: tests/broker_matrix.py)."""
from __future__ import annotations

import asyncio

import pytest

from tests.broker_matrix import api, broker, pipeline, worker  # noqa: F401 (fixtures: one run per broker)
from tests.helpers import assert_ledger_clean, final_payment, new_user, pay, psp_stats, register, wallet

pytestmark = pytest.mark.usefixtures("worker")


async def test_payin_with_prefer_wait_answers_201_and_credits_the_wallet(api, settings, pool, psp_sim):
    user = new_user()
    status, body = await pay(api, settings, user, "tok_card_ok", f"wallet:{user}", "50.00", "card", wait_s=10)
    assert status == 201, body
    assert body["status"] == "succeeded" and body["is_complete"] is True
    order = body["orders"][0]
    assert order["payment_order_status"] == "completed"
    assert order["ledger_updated"] and order["wallet_updated"] and order["psp_reference"]
    assert await wallet(api, settings, user) == {"USD": ("50.00", "0.00")}
    stats = await psp_stats(psp_sim, order["payment_order_id"])
    assert stats == {"submits": 1, "charged": True}
    full = await final_payment(api, settings, user, body["payment_id"])
    assert [e["type"] for e in full["events"]] == [
        "payment.requested", "order.risk_checked", "order.psp_submitting", "order.psp_succeeded", "order.posted"]
    await assert_ledger_clean(pool)


async def test_transfer_moves_money_between_two_users_without_a_psp(api, settings, pool):
    alice, bob = new_user("alice"), new_user("bob")
    await register(api, settings, bob)
    assert (await pay(api, settings, alice, "tok_card_ok", f"wallet:{alice}", "30.00", "card", wait_s=10))[0] == 201
    status, body = await pay(api, settings, alice, f"wallet:{alice}", f"wallet:{bob}", "12.50", "wallet", wait_s=10)
    assert status == 201 and body["status"] == "succeeded", body
    assert body["orders"][0]["psp"] is None
    assert await wallet(api, settings, alice) == {"USD": ("17.50", "0.00")}
    assert await wallet(api, settings, bob) == {"USD": ("12.50", "0.00")}
    await assert_ledger_clean(pool)


async def test_payout_reserves_first_then_spends_the_reserve(api, settings, pool, psp_sim):
    user = new_user()
    await pay(api, settings, user, "tok_bank_ok", f"wallet:{user}", "40.00", "bank_account", wait_s=10)
    status, body = await pay(api, settings, user, f"wallet:{user}", "tok_bank_ok", "15.00", "bank_account", wait_s=10)
    assert status == 201 and body["status"] == "succeeded", body
    assert await wallet(api, settings, user) == {"USD": ("25.00", "0.00")}
    full = await final_payment(api, settings, user, body["payment_id"])
    types = [e["type"] for e in full["events"]]
    assert types.index("order.reserved") < types.index("order.psp_submitting") < types.index("order.posted")
    await assert_ledger_clean(pool)


async def test_declined_payin_fails_and_moves_no_money(api, settings, pool):
    user = new_user()
    status, body = await pay(api, settings, user, "tok_card_decline", f"wallet:{user}", "9.99", "card", wait_s=10)
    assert status == 201 and body["status"] == "failed" and body["failure_code"] == "card_declined", body
    assert await wallet(api, settings, user) in ({}, {"USD": ("0.00", "0.00")})
    await assert_ledger_clean(pool)


async def test_declined_payout_releases_the_reserve(api, settings, pool):
    user = new_user()
    await pay(api, settings, user, "tok_card_ok", f"wallet:{user}", "20.00", "card", wait_s=10)
    status, body = await pay(api, settings, user, f"wallet:{user}", "tok_bank_decline", "8.00", "bank_account",
                             wait_s=10)
    assert status == 201 and body["status"] == "failed", body
    assert await wallet(api, settings, user) == {"USD": ("20.00", "0.00")}
    full = await final_payment(api, settings, user, body["payment_id"])
    assert "order.released" in [e["type"] for e in full["events"]]
    await assert_ledger_clean(pool)


@pytest.mark.parametrize("token", ["tok_card_flaky", "tok_card_drop", "tok_card_slow", "tok_card_pending"])
async def test_an_unreliable_psp_still_charges_exactly_once(api, settings, pool, psp_sim, token):
    """flaky: 503s then success; drop: charged, response lost; slow: charged, client timed out;
    pending: the PSP answers later. Each ends completed with one charge at the PSP, and after a
    lost or timed-out response the PSP is asked, not sent the charge again."""
    user = new_user()
    status, body = await pay(api, settings, user, token, f"wallet:{user}", "7.00", "card")
    assert status == 202
    final = await final_payment(api, settings, user, body["payment_id"])
    assert final["status"] == "succeeded", final
    order_id = final["orders"][0]["payment_order_id"]
    stats = await psp_stats(psp_sim, order_id)
    assert stats["charged"] is True
    if token in ("tok_card_drop", "tok_card_slow", "tok_card_pending"):
        assert stats["submits"] == 1, stats  # asked for its status, never re-sent
    assert await wallet(api, settings, user) == {"USD": ("7.00", "0.00")}
    await assert_ledger_clean(pool)


async def test_risk_guardrail_blocks_an_oversized_payment(api, settings, pool):
    user = new_user()
    amount = f"{settings.risk_amount_minor_max_by_currency['USD'] // 100 + 1}.00"
    status, body = await pay(api, settings, user, "tok_card_ok", f"wallet:{user}", amount, "card", wait_s=10)
    assert status == 201 and body["status"] == "failed" and body["failure_code"] == "amount_over_risk_limit"
    await assert_ledger_clean(pool)


async def test_jpy_and_kwd_amounts_keep_their_exponents(api, settings, pool):
    user = new_user()
    for amount, currency in (("1500", "JPY"), ("1.005", "KWD")):
        status, body = await pay(api, settings, user, "tok_card_ok", f"wallet:{user}", amount, "card",
                                 currency=currency, wait_s=10)
        assert status == 201 and body["amount"] == amount, body
    assert await wallet(api, settings, user) == {"JPY": ("1500", "0"), "KWD": ("1.005", "0.000")}
    await assert_ledger_clean(pool)


async def test_many_payments_at_once_all_complete(api, settings, pool):
    users = [new_user() for _ in range(10)]
    results = await asyncio.gather(*(pay(api, settings, u, "tok_card_ok", f"wallet:{u}", "1.00", "card")
                                     for u in users for _ in range(3)))
    assert {s for s, _ in results} == {202}
    finals = await asyncio.gather(*(final_payment(api, settings, b["user_id"], b["payment_id"]) for _, b in results))
    assert {f["status"] for f in finals} == {"succeeded"}
    for u in users:
        assert await wallet(api, settings, u) == {"USD": ("3.00", "0.00")}
    await assert_ledger_clean(pool)
