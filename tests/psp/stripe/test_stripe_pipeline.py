"""A pay-in through the real worker and the Stripe connector against its simulator, then the
ledger check. The order is placed at the charge step with `psp="stripe"`: the API takes only the
test simulator's `tok_...` tokens until instrument references accept each connector's own
(`registry.token_fits`), and the screen step picks `psp_default` for the whole session."""
from __future__ import annotations

import pytest

from paycell.actors.broker import send
from paycell.store import payments
from tests.helpers import assert_ledger_clean, new_order, new_user, wait_until
from tests.helpers import lock_by_id, read_by_id

pytestmark = pytest.mark.usefixtures("worker")


async def _charge_through_stripe(pool, broker, instrument: str, amount_minor: int) -> str:
    user = new_user()
    async with pool.acquire() as conn, conn.transaction():
        order_id = await new_order(conn, user, "payin", amount_minor, instrument=instrument)
        order = await lock_by_id(conn, order_id)
        await payments.move(conn, order, "psp_submitting", event="order.psp_submitting", psp="stripe", attempt=1)
    send(broker, "charge", user, order_id)
    return order_id


async def _final(pool, order_id: str):
    async def done():
        async with pool.acquire() as conn:
            order = await read_by_id(conn, order_id)
        return order if order.payment_order_status in ("completed", "failed", "needs_attention") else None
    order = await wait_until(done, timeout_s=30, interval_s=0.1)
    assert order, f"order {order_id} did not finish"
    return order


async def test_a_card_payin_completes_with_one_payment_intent_and_a_clean_ledger(pool, broker, sim):
    order_id = await _charge_through_stripe(pool, broker, "pm_card_visa", 3_300)
    order = await _final(pool, order_id)
    assert (order.payment_order_status, order.ledger_updated, order.wallet_updated) == ("completed", True, True)
    [made] = await sim.charges(order_id)
    assert made["status"] == "succeeded" and made["reference"] == order.psp_reference
    await assert_ledger_clean(pool)


async def test_a_lost_answer_is_asked_about_and_the_payin_completes_once(pool, broker, sim):
    await sim.faults(drop_after_charge=1)
    order_id = await _charge_through_stripe(pool, broker, "pm_card_visa", 4_100)
    order = await _final(pool, order_id)
    assert order.payment_order_status == "completed" and order.attempt >= 2
    [made] = await sim.charges(order_id)
    assert made["reference"] == order.psp_reference
    await assert_ledger_clean(pool)


async def test_a_declined_card_fails_the_order_and_moves_no_money(pool, broker, sim):
    order_id = await _charge_through_stripe(pool, broker, "pm_card_visa_chargeDeclinedInsufficientFunds", 2_000)
    order = await _final(pool, order_id)
    assert order.payment_order_status == "failed" and not order.ledger_updated
    async with pool.acquire() as conn:
        failure = await conn.fetchval("SELECT failure_code FROM payment_order WHERE payment_order_id = $1", order_id)
    assert failure == "insufficient_funds"
    await assert_ledger_clean(pool)
