"""Payments the default rules park for review, end to end through the real API and worker:
approved they complete as an allowed payment would, declined they fail and a pay-out's reserve
comes back; a pay-out keeps its reserve while parked."""
from __future__ import annotations

import uuid

from paycell.store import reviews as store
from tests.helpers import (assert_ledger_clean, auth_header, final_payment, fund_wallet, new_user, operator_header,
                           pay, wait_until, wallet)
from tests.review.support import act, event_types, item_of, operator, order_state, park


async def test_a_large_payin_on_a_new_instrument_is_parked_then_approved_and_completes(
        review_api, review_settings, pool):
    api, settings = review_api, review_settings
    user, ops = new_user("payer"), operator()
    payment_id, item = await park(api, settings, pool, user, "payin")
    assert item.state == "open" and item.kind == "payment"
    assert "new instrument, large amount" in item.reasons
    assert item.evidence["verdict"] == "review" and item.evidence["fired"]

    # The user sees a payment in progress, not who reviews it nor why.
    resp = await api.get(f"/payments/payment/v1/{payment_id}", headers=auth_header(settings, user))
    seen = await resp.json()
    assert seen["status"] == "processing" and seen["orders"][0]["payment_order_status"] == "in_review"
    in_review = next(e for e in seen["events"] if e["type"] == "order.in_review")
    assert set(in_review["data"]) <= {"from", "to"}

    # The operator sees the item, its evidence and the whole history.
    resp = await api.get(f"/reviews/{item.review_id}", headers=operator_header(settings, ops))
    detail = await resp.json()
    assert resp.status == 200, detail
    assert detail["object"] == "review" and detail["payment"]["payment_id"] == payment_id
    assert detail["payment_order_status"] == "in_review"
    checked = next(e for e in detail["events"] if e["type"] == "order.risk_checked")
    assert checked["data"]["verdict"] == "review" and checked["data"]["fired"]
    assert next(e for e in detail["events"] if e["type"] == "order.in_review")["data"]["review_id"] == item.review_id

    status, body = await act(api, settings, item.review_id, "approve", ops, note="known customer")
    assert status == 200, body
    assert body["state"] == "approved" and body["outcome"] == "approve" and body["resolved_by"] == ops
    assert body["note"] == "known customer" and body["resolved_at"]

    done = await final_payment(api, settings, user, payment_id)
    assert done["status"] == "succeeded", done
    assert (await wallet(api, settings, user))["USD"] == ("600.00", "0.00")
    types = await event_types(pool, item.payment_order_id)
    assert types.index("order.review_approved") < types.index("order.psp_submitting")
    approved = await pool.fetchval("SELECT data FROM event WHERE payment_order_id = $1 AND type = "
                                   "'order.review_approved'", uuid.UUID(item.payment_order_id))
    assert approved["by"] == ops and approved["review_id"] == item.review_id and approved["note"] == "known customer"
    await assert_ledger_clean(pool)


async def test_a_parked_payout_keeps_its_reserve_and_a_decline_releases_it(review_api, review_settings, pool, book):
    api, settings = review_api, review_settings
    user, ops = new_user("payee"), operator()
    await fund_wallet(pool, book, user, 1_000_00)
    payment_id, item = await park(api, settings, pool, user, "payout")
    # Reserved before it was parked: the money cannot be spent twice meanwhile.
    assert (await wallet(api, settings, user))["USD"] == ("400.00", "600.00")
    status, body = await pay(api, settings, user, f"wallet:{user}", "tok_card_ok", "450.00", "card", wait_s=10)
    assert body["status"] == "failed" and body["failure_code"] == "insufficient_funds", body

    status, body = await act(api, settings, item.review_id, "decline", ops, note="mule pattern")
    assert status == 200 and body["state"] == "declined" and body["payment_order_status"] == "failed", body

    done = await final_payment(api, settings, user, payment_id)
    assert done["status"] == "failed" and done["failure_code"] == "review_declined"
    assert (await wallet(api, settings, user))["USD"] == ("1000.00", "0.00")
    types = await event_types(pool, item.payment_order_id)
    assert types[-3:] == ["order.review_declined", "order.released", "order.failed"]
    await assert_ledger_clean(pool)


async def test_an_approved_payout_is_paid_from_its_reserve(review_api, review_settings, pool, book):
    api, settings = review_api, review_settings
    user, ops = new_user("payee"), operator()
    await fund_wallet(pool, book, user, 1_000_00)
    payment_id, item = await park(api, settings, pool, user, "payout")
    status, body = await act(api, settings, item.review_id, "approve", ops)
    assert status == 200, body
    done = await final_payment(api, settings, user, payment_id)
    assert done["status"] == "succeeded", done
    assert (await wallet(api, settings, user))["USD"] == ("400.00", "0.00")
    # One reserve, spent once (settled), never released.
    keys = await pool.fetch("SELECT idempotency_key FROM ledger_transaction WHERE payment_order_id = $1",
                            uuid.UUID(item.payment_order_id))
    assert sorted(k["idempotency_key"].rsplit(":", 1)[1] for k in keys) == ["reserve", "settle"]
    await assert_ledger_clean(pool)


async def test_a_payout_that_cannot_be_reserved_fails_instead_of_being_parked(review_api, review_settings, pool, book):
    api, settings = review_api, review_settings
    user = new_user("payee")
    await fund_wallet(pool, book, user, 100_00)
    status, body = await pay(api, settings, user, f"wallet:{user}", "tok_card_ok", "600.00", "card", wait_s=10)
    assert body["status"] == "failed" and body["failure_code"] == "insufficient_funds", body
    assert await item_of(pool, user, body["payment_id"]) is None
    # The decision is logged as it was made.
    checked = await pool.fetchval("SELECT data FROM event WHERE payment_id = $1 AND type = 'order.risk_checked'",
                                  uuid.UUID(body["payment_id"]))
    assert checked["verdict"] == "review"
    assert (await wallet(api, settings, user))["USD"] == ("100.00", "0.00")
    await assert_ledger_clean(pool)


async def test_a_small_payment_is_allowed_inline_without_an_item(review_api, review_settings, pool):
    api, settings = review_api, review_settings
    user = new_user("payer")
    status, body = await pay(api, settings, user, "tok_card_ok", f"wallet:{user}", "100.00", "card", wait_s=10)
    assert body["status"] == "succeeded", body
    assert await item_of(pool, user, body["payment_id"]) is None
    await assert_ledger_clean(pool)


async def test_a_redelivered_screen_message_opens_no_second_item(review_api, review_settings, review_broker, pool):
    from paycell.actors.broker import send

    api, settings = review_api, review_settings
    user = new_user("payer")
    _, item = await park(api, settings, pool, user, "payin")
    before = await event_types(pool, item.payment_order_id)
    for _ in range(2):
        send(review_broker, "screen", user, item.payment_order_id)
    # Both messages handled: a `proceed` sent after them runs after them on the worker's queue
    # too (it finds the item open and holds the order: no event).
    send(review_broker, "proceed", user, item.payment_order_id)
    lease = await pool.fetchval("SELECT lease_until FROM payment_order WHERE payment_order_id = $1",
                                uuid.UUID(item.payment_order_id))
    assert await wait_until(lambda: _lease_moved(pool, item.payment_order_id, lease), timeout_s=10) is not None
    count = await pool.fetchval("SELECT count(*) FROM review_item WHERE user_id = $1", user)
    assert count == 1
    assert await order_state(pool, item.payment_order_id) == "in_review"
    assert await event_types(pool, item.payment_order_id) == before
    # The table's own key says the same.
    async with pool.acquire() as conn:
        again, created = await store.insert_payment_item(
            conn, user_id=user, payment_id=item.payment_id, order_id=item.payment_order_id, reasons=["x"],
            evidence={}, expires_at=item.expires_at)
    assert (again, created) == (item.review_id, False)


async def _lease_moved(pool, order_id, lease):
    now = await pool.fetchval("SELECT lease_until FROM payment_order WHERE payment_order_id = $1", uuid.UUID(order_id))
    return now if now != lease else None
