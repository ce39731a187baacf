"""What Postgres itself enforces on the review queue (migration 0015): an item is born open, its
subject and evidence are frozen, a resolved item is final, nothing is ever deleted; and the
state table and ledger accept what a parked payment needs (a transfer approved from in_review, a
parked pay-out's release) and nothing more."""
from __future__ import annotations

import datetime
import uuid

import asyncpg
import pytest

from paycell import reviews
from paycell.errors import LedgerError
from paycell.store import ledger, payments
from paycell.store import reviews as store
from tests.helpers import (assert_ledger_clean, fund_wallet, new_order, new_user, operator_header, wait_until,
                           wallet)
from tests.review.support import event_types, order_state
from tests.helpers import lock_by_id


async def _parked(pool, settings, kind: str, user: str | None = None, *, amount_minor: int = 600_00,
                  to_user: str | None = None) -> tuple[str, str]:
    """An order accepted and parked in-process (reviews.park, as the screen step calls it);
    returns (order id, review id)."""
    user = user or new_user()
    async with pool.acquire() as conn, conn.transaction():
        order_id = await new_order(conn, user, kind, amount_minor, to_user=to_user)
        order = await lock_by_id(conn, order_id)
        review_id = await reviews.park(conn, settings, order, evidence={"verdict": "review"}, reasons=["test"])
    return order_id, review_id



async def _refused(conn, sql: str, *args, error):
    txn = conn.transaction()
    await txn.start()
    try:
        with pytest.raises(error) as err:
            await conn.execute(sql, *args)
    finally:
        await txn.rollback()
    return err.value


async def test_an_item_is_frozen_undeletable_and_final_once_resolved(pool, owner, settings):
    order_id, review_id = await _parked(pool, settings, "payin")
    rid = uuid.UUID(review_id)
    async with pool.acquire() as conn:
        for sql in ("UPDATE review_item SET evidence = '{}' WHERE review_id = $1",
                    "UPDATE review_item SET expires_at = now() + interval '1 year' WHERE review_id = $1",
                    "UPDATE review_item SET reasons = '{}' WHERE review_id = $1",
                    "DELETE FROM review_item WHERE review_id = $1"):
            await _refused(conn, sql, rid, error=asyncpg.InsufficientPrivilegeError)
        await _refused(conn, "UPDATE review_item SET state = 'approved' WHERE review_id = $1", rid,
                       error=asyncpg.CheckViolationError)  # resolved without who and when
    for sql, error in (("UPDATE review_item SET evidence = '{}' WHERE review_id = $1", asyncpg.CheckViolationError),
                       ("DELETE FROM review_item WHERE review_id = $1", asyncpg.InsufficientPrivilegeError)):
        await _refused(owner, sql, rid, error=error)

    async with pool.acquire() as conn:
        await reviews.resolve(conn, settings, review_id, by="ops-guard", action="decline")
        for sql in ("UPDATE review_item SET state = 'claimed', claimed_by = 'x', claimed_at = now() "
                    "WHERE review_id = $1",
                    "UPDATE review_item SET note = 'rewritten' WHERE review_id = $1",
                    "UPDATE review_item SET state = 'approved', outcome = 'approve' WHERE review_id = $1"):
            err = await _refused(conn, sql, rid, error=asyncpg.CheckViolationError)
            assert err.constraint_name == "review_item_guard"
    await _refused(owner, "UPDATE review_item SET note = 'x' WHERE review_id = $1", rid,
                   error=asyncpg.CheckViolationError)
    assert await order_state(pool, order_id) == "failed"
    await assert_ledger_clean(pool)


async def test_an_item_is_born_open_and_a_payment_item_names_its_payment(pool, settings):
    user = new_user()
    async with pool.acquire() as conn:
        order_id = await new_order(conn, user, "payin", 1_00)
        payment_id = await conn.fetchval("SELECT payment_id FROM payment_order WHERE payment_order_id = $1",
                                         uuid.UUID(order_id))
        insert = """INSERT INTO review_item (user_id, review_id, kind, payment_id, payment_order_id, state,
                                             resolved_by, resolved_at, outcome, expires_at)
                    VALUES ($1, gen_random_uuid(), $2, $3, $4, $5, $6, $7, $8, now())"""
        now = datetime.datetime.now(datetime.timezone.utc)
        err = await _refused(conn, insert, user, "payment", payment_id, uuid.UUID(order_id), "approved", "x", now,
                             "approve", error=asyncpg.CheckViolationError)
        assert err.constraint_name == "review_item_guard"
        await _refused(conn, insert, user, "payment", None, None, "open", None, None, None,
                       error=asyncpg.CheckViolationError)
        # Another kind (reconciliation's, later) needs no payment.
        txn = conn.transaction()
        await txn.start()
        await conn.execute(insert, user, "recon_mismatch", None, None, "open", None, None, None)
        await txn.rollback()


async def test_a_parked_order_moves_only_along_the_table_and_post_order_agrees(pool, owner, settings, book):
    user = new_user()
    await fund_wallet(pool, book, user, 1_000_00)
    order_id, _ = await _parked(pool, settings, "payout", user)
    assert await wallets_of(pool, user) == (400_00, 600_00)
    sql = "UPDATE payment_order SET payment_order_status = $2 WHERE payment_order_id = $1"
    for to in ("requested", "psp_pending", "psp_succeeded", "requires_action", "returned"):
        async with pool.acquire() as conn:
            err = await _refused(conn, sql, uuid.UUID(order_id), to, error=asyncpg.CheckViolationError)
        assert err.constraint_name == "payment_order_guard"
    async with pool.acquire() as conn:
        # (`reserve` again replays the reserve it took before it was parked: keyed by the order.)
        for step in ("settle", "transfer", "return"):
            with pytest.raises(LedgerError):
                async with conn.transaction():
                    await ledger.post_order(conn, user, order_id, step, system_slices=4)
        # A parked pay-out's release is justified (a decline), once.
        async with conn.transaction():
            first = await ledger.post_order(conn, user, order_id, "release", system_slices=4)
            again = await ledger.post_order(conn, user, order_id, "release", system_slices=4)
            order = await lock_by_id(conn, order_id)
            await payments.move(conn, order, "failed", event="order.failed", failure_code="review_declined")
    assert again.transaction_id == first.transaction_id
    assert await wallets_of(pool, user) == (1_000_00, 0)
    await assert_ledger_clean(pool)


async def wallets_of(pool, user):
    from paycell.store import wallets
    usd = [b for b in await wallets.balances(pool, user) if b.currency == "USD"][0]
    return usd.available_minor, usd.reserved_minor


async def test_an_approved_transfer_posts_from_in_review(review_api, review_settings, pool, book):
    """Transfers are parked without a hold (there is none for a transfer): approved, they post if the
    wallet still covers them, else fail insufficient_funds."""
    api, settings = review_api, review_settings
    alice, bob, broke = new_user("alice"), new_user("bob"), new_user("broke")
    await fund_wallet(pool, book, alice, 700_00)
    paid, paid_review = await _parked(pool, settings, "transfer", alice, to_user=bob)
    unpaid, unpaid_review = await _parked(pool, settings, "transfer", broke, to_user=bob)
    for review_id in (paid_review, unpaid_review):
        resp = await api.post(f"/reviews/{review_id}/approve", headers=operator_header(settings, "ops-transfers"))
        assert resp.status == 200, await resp.json()
    assert await wait_until(lambda: _ended(pool, paid)) == "completed"
    assert await wait_until(lambda: _ended(pool, unpaid)) == "failed"
    assert await pool.fetchval("SELECT failure_code FROM payment_order WHERE payment_order_id = $1",
                               uuid.UUID(unpaid)) == "insufficient_funds"
    assert (await wallet(api, settings, bob))["USD"] == ("600.00", "0.00")
    assert (await wallet(api, settings, alice))["USD"] == ("100.00", "0.00")
    assert "order.posted" in await event_types(pool, paid)
    await assert_ledger_clean(pool)


async def _ended(pool, order_id):
    state = await order_state(pool, order_id)
    return state if state in ("completed", "failed") else None


async def test_a_second_proceed_does_nothing(review_api, review_settings, review_broker, pool):
    from paycell.actors.broker import send

    api, settings = review_api, review_settings
    order_id, review_id = await _parked(pool, settings, "transfer", new_user(), to_user=new_user())
    async with pool.acquire() as conn:
        resolved = await reviews.resolve(conn, settings, review_id, by="ops-twice", action="decline")
    assert resolved.proceed is None and resolved.order_state == "failed"
    before = await event_types(pool, order_id)
    user_id = await _user_of(pool, order_id)
    send(review_broker, "proceed", user_id, order_id)
    send(review_broker, "proceed", user_id, order_id)
    await wait_until(lambda: _never(), timeout_s=1)
    assert await event_types(pool, order_id) == before and await order_state(pool, order_id) == "failed"
    item = await store.for_order(pool, await _user_of(pool, order_id), order_id)
    assert item.state == "declined"
    await assert_ledger_clean(pool)


async def _never():
    return None


async def _user_of(pool, order_id):
    return await pool.fetchval("SELECT user_id FROM payment_order WHERE payment_order_id = $1", uuid.UUID(order_id))
