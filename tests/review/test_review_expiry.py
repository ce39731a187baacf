"""An unresolved item expires by the configured policy (PAYCELL_REVIEW_EXPIRY_S,
PAYCELL_REVIEW_EXPIRY_ACTION), through the periodic actor or `expire_due`; two runners at once
resolve each item once. While an item is open the sweeper neither re-drives nor fails its order."""
from __future__ import annotations

import asyncio
import datetime
import uuid

import msgspec

from paycell import reviews
from paycell.actors.broker import send
from paycell.store import reviews as store
from paycell.sweeper import sweep_once
from tests.helpers import assert_ledger_clean, final_payment, fund_wallet, new_user, wait_until, wallet
from tests.review.support import event_types, item_of, order_state, park


async def _past_expiry(item: store.Item) -> None:
    wait_s = (item.expires_at - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    await asyncio.sleep(max(0.0, wait_s) + 0.3)


async def test_the_periodic_actor_declines_an_expired_payout_and_releases_its_reserve(
        review_api, review_settings, review_broker, pool, book):
    api, settings = review_api, review_settings
    user = new_user("payee")
    await fund_wallet(pool, book, user, 1_000_00)
    payment_id, item = await park(api, settings, pool, user, "payout")
    await _past_expiry(item)
    send(review_broker, "expire_reviews")  # what the scheduler sends every minute
    done = await final_payment(api, settings, user, payment_id)
    assert done["status"] == "failed" and done["failure_code"] == "review_expired", done
    expired = await item_of(pool, user, payment_id)
    assert (expired.state, expired.outcome, expired.resolved_by) == ("expired", "decline", reviews.EXPIRY)
    assert (await wallet(api, settings, user))["USD"] == ("1000.00", "0.00")
    assert "order.released" in await event_types(pool, item.payment_order_id)
    await assert_ledger_clean(pool)


async def test_the_approve_policy_lets_an_expired_payment_continue(review_api, review_settings, review_broker, pool):
    api, settings = review_api, review_settings
    approving = msgspec.structs.replace(settings, review_expiry_action="approve")
    user = new_user("payer")
    payment_id, item = await park(api, settings, pool, user, "payin")
    await _past_expiry(item)
    result = await reviews.expire_due(pool, approving)
    assert (user, item.payment_order_id) in result.proceed
    for user_id, order_id in result.proceed:
        send(review_broker, "proceed", user_id, order_id)
    done = await final_payment(api, settings, user, payment_id)
    assert done["status"] == "succeeded", done
    expired = await item_of(pool, user, payment_id)
    assert (expired.state, expired.outcome, expired.resolved_by) == ("expired", "approve", reviews.EXPIRY)
    assert (await wallet(api, settings, user))["USD"] == ("600.00", "0.00")
    await assert_ledger_clean(pool)


async def test_two_expiry_runners_resolve_each_item_once(review_api, review_settings, pool):
    api, settings = review_api, review_settings
    parked = [await park(api, settings, pool, new_user("payer"), "payin") for _ in range(3)]
    await _past_expiry(parked[-1][1])
    first, second = await asyncio.gather(reviews.expire_due(pool, settings), reviews.expire_due(pool, settings))
    assert first.proceed == second.proceed == []  # the policy here declines
    for payment_id, item in parked:
        assert (await item_of(pool, item.user_id, payment_id)).state == "expired"
        types = await event_types(pool, item.payment_order_id)
        assert types.count("order.review_expired") == 1 and types.count("order.failed") == 1
    await assert_ledger_clean(pool)


async def test_the_sweeper_leaves_a_parked_order_alone_and_re_drives_a_lost_approval(
        review_api, review_settings, review_broker, pool):
    api, settings = review_api, review_settings
    user = new_user("payer")
    payment_id, item = await park(api, settings, pool, user, "payin")
    order_id = uuid.UUID(item.payment_order_id)
    row = await pool.fetchrow("SELECT lease_until, deadline_at FROM payment_order WHERE payment_order_id = $1",
                              order_id)
    # Parked: its lease runs to the item's expiry, its deadline a full order deadline after that.
    assert row["lease_until"] == item.expires_at
    assert row["deadline_at"] == item.expires_at + datetime.timedelta(seconds=settings.order_deadline_s)
    await sweep_once(pool, review_broker, settings)
    assert await pool.fetchval("SELECT lease_until FROM payment_order WHERE payment_order_id = $1",
                               order_id) == item.expires_at

    # Past its expiry with nobody expiring it: the sweeper's re-drive keeps it parked (no deadline).
    await _past_expiry(item)
    before = await event_types(pool, item.payment_order_id)
    result = await sweep_once(pool, review_broker, settings)
    assert result.redriven.get("proceed", 0) >= 1
    held = await wait_until(lambda: _lease_after(pool, order_id, item.expires_at), timeout_s=10)
    assert held is not None
    await asyncio.sleep(0.5)  # `proceed` ran (or runs now): it holds the order, writing nothing
    assert await order_state(pool, item.payment_order_id) == "in_review"
    assert await event_types(pool, item.payment_order_id) == before

    # Approved, but the message to `proceed` is lost (nobody sends it): the sweeper re-drives it.
    async with pool.acquire() as conn:
        resolved = await reviews.resolve(conn, settings, item.review_id, by="ops-lost", action="approve")
    assert resolved.proceed == (user, item.payment_order_id)
    await asyncio.sleep(settings.psp_lease_s + 0.5)
    await sweep_once(pool, review_broker, settings)
    done = await final_payment(api, settings, user, payment_id)
    assert done["status"] == "succeeded", done
    await assert_ledger_clean(pool)


async def _lease_after(pool, order_id, then):
    lease = await pool.fetchval("SELECT lease_until FROM payment_order WHERE payment_order_id = $1", order_id)
    return lease if lease > then else None
