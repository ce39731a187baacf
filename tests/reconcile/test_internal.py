"""The hourly internal reconciliation, each kind created on purpose: a charge made at the PSP that
paycell never recorded (the test simulator, over real HTTP), or a non-ledger table corrupted as the
owner role. Safe kinds are fixed by a compensating posting and an event, the ledger check stays
clean; the others are queued exactly once, however many runs find them."""
from __future__ import annotations

import datetime
import uuid

import pytest

from paycell.actors.charge import charge_for
from paycell.reconcile.internal import run_internal
from paycell.store import ledger, payments
from tests.helpers import assert_ledger_clean, fund_wallet, new_order, new_user
from tests.helpers import lock_by_id, read_by_id

pytestmark = pytest.mark.usefixtures("psp_sim")
PAST = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)


async def _order(pool, kind: str = "payin", *, state: str = "psp_submitting", amount_minor: int = 12_00,
                 user: str | None = None, **fields) -> str:
    """An order sent to the `test` connector, left in `state` with its lease run out."""
    user = user or new_user("internal")
    async with pool.acquire() as conn, conn.transaction():
        order_id = await new_order(conn, user, kind, amount_minor)
        order = await lock_by_id(conn, order_id)
        if kind == "payout":
            await ledger.post_order(conn, order.user_id, order_id, "reserve", system_slices=4)
        await payments.move(conn, order, "psp_submitting", event="order.psp_submitting", psp="test", attempt=1,
                            lease_until=PAST)
        if state != "psp_submitting":
            await payments.move(conn, order, state, event=f"order.{state}", **fields)
    return order_id


async def _breaks(pool, order_id: str) -> list:
    return await pool.fetch("""SELECT kind, disposition, fix, review_id::text, transaction_id FROM recon_break
                                WHERE owner_id = 'recon:internal' AND payment_order_id = $1 ORDER BY kind""", order_id)


async def _state(pool, order_id: str) -> str:
    return await pool.fetchval("SELECT payment_order_status FROM payment_order WHERE payment_order_id = $1", order_id)


async def _charge_at_psp(ctx, pool, order_id: str) -> None:
    """The PSP charges the order (its answer never reached paycell)."""
    order = await read_by_id(pool, order_id)
    result = await ctx.psp("test").submit(charge_for(order))
    assert result.status == "succeeded"


async def test_a_charge_the_psp_made_but_paycell_never_recorded_is_completed_and_posted(ctx, pool):
    order_id = await _order(pool)
    await _charge_at_psp(ctx, pool, order_id)
    timed_out = await _order(pool, state="needs_attention", failure_code="retries_exhausted")
    await _charge_at_psp(ctx, pool, timed_out)
    run = await run_internal(ctx, grace_s=0)
    for oid in (order_id, timed_out):
        [brk] = await _breaks(pool, oid)
        assert (brk["kind"], brk["disposition"], brk["fix"]) == ("psp_succeeded_not_posted", "fixed",
                                                                 "completed_and_posted")
        assert brk["transaction_id"] is not None
        assert await _state(pool, oid) == "completed"
        types = [r["type"] for r in await pool.fetch("SELECT type FROM event WHERE payment_order_id = $1", oid)]
        assert "order.reconciled" in types and "order.posted" in types
    assert run.auto_fixed >= 2 and run.counts["psp_succeeded_not_posted"] >= 2
    await assert_ledger_clean(pool)


async def test_an_order_the_psp_never_charged_fails_and_a_payout_reserve_is_released(ctx, pool, book):
    payin = await _order(pool, state="psp_pending")
    user = new_user("payout")
    await fund_wallet(pool, book, user, 50_00)
    payout = await _order(pool, "payout", amount_minor=20_00, user=user)
    await run_internal(ctx, grace_s=0)
    assert [(b["kind"], b["fix"]) for b in await _breaks(pool, payin)] == [("psp_failed_still_pending", "failed")]
    assert [(b["kind"], b["fix"]) for b in await _breaks(pool, payout)] == [("psp_failed_still_pending",
                                                                             "failed_and_released")]
    assert await _state(pool, payin) == "failed" and await _state(pool, payout) == "failed"
    wallet = await pool.fetchval("SELECT balance_minor FROM account WHERE code = $1 AND currency = 'USD'",
                                 f"wallet:{user}")
    assert wallet == 50_00
    await assert_ledger_clean(pool)


async def test_a_success_after_paycell_failed_the_order_is_queued_once(ctx, pool):
    order_id = await _order(pool)
    await _charge_at_psp(ctx, pool, order_id)
    async with pool.acquire() as conn, conn.transaction():
        order = await lock_by_id(conn, order_id)
        await payments.move(conn, order, "failed", event="order.failed", failure_code="deadline_exceeded")
    await run_internal(ctx, grace_s=0)
    await run_internal(ctx, grace_s=0)
    [brk] = await _breaks(pool, order_id)
    assert (brk["kind"], brk["disposition"]) == ("psp_succeeded_order_failed", "queued")
    items = await pool.fetch("SELECT reasons, evidence FROM review_item WHERE user_id = 'recon:internal' "
                             "AND evidence->>'payment_order_id' = $1", order_id)
    assert len(items) == 1 and items[0]["reasons"] == ["psp_succeeded_order_failed"]
    assert items[0]["evidence"]["psp_status"] == "succeeded"
    await assert_ledger_clean(pool)


async def test_ledger_and_order_disagreements_are_found(ctx, pool, owner, book):
    # posted, not marked: the order's flags lost (corrupted as the owner)
    flags = await _order(pool, state="completed", ledger_updated=False)
    async with pool.acquire() as conn, conn.transaction():
        marked_only = await new_order(conn, new_user("marked"), "payin", 9_00)
        order = await lock_by_id(conn, marked_only)
        await payments.move(conn, order, "psp_submitting", event="order.psp_submitting", psp="test", attempt=1)
        await ledger.post_order(conn, order.user_id, marked_only, "settle", system_slices=4)
        await payments.move(conn, order, "completed", event="order.posted", ledger_updated=True, wallet_updated=True)
    await owner.execute("UPDATE payment_order SET ledger_updated = false, wallet_updated = false "
                        "WHERE payment_order_id = $1", marked_only)
    # marked, not posted: completed with no settlement (the flags order never posted)
    await owner.execute("UPDATE payment_order SET updated_at = now() - interval '1 hour' WHERE payment_order_id = $1",
                        flags)
    # requested, past its deadline (the sweeper never moved it)
    async with pool.acquire() as conn:
        stale = await new_order(conn, new_user("stale"), "payin", 3_00)
    await owner.execute("UPDATE payment_order SET deadline_at = $2 WHERE payment_order_id = $1", stale, PAST)
    await run_internal(ctx, grace_s=0)
    await run_internal(ctx, grace_s=0)
    assert [(b["kind"], b["disposition"], b["fix"]) for b in await _breaks(pool, marked_only)] == [
        ("posted_not_marked", "fixed", "marked_posted")]
    assert await pool.fetchval("SELECT ledger_updated AND wallet_updated FROM payment_order "
                               "WHERE payment_order_id = $1", marked_only)
    assert [(b["kind"], b["disposition"]) for b in await _breaks(pool, flags)] == [("marked_not_posted", "queued")]
    assert [(b["kind"], b["disposition"]) for b in await _breaks(pool, stale)] == [("live_past_deadline", "queued")]
    for oid in (flags, stale):
        assert await pool.fetchval("SELECT count(*) FROM review_item WHERE user_id = 'recon:internal' "
                                   "AND evidence->>'payment_order_id' = $1", oid) == 1
    # The flags order stays completed without money: invariant-wise the ledger itself is clean.
    await assert_ledger_clean(pool)


async def _shift_balance(owner, account_id: int, delta_minor: int) -> None:
    """Corrupt a stored balance: only a superuser with triggers off can (migration 0005's guard
    refuses even the owner), as a restored dump or a hand in production might."""
    async with owner.transaction():
        await owner.execute("RESET ROLE")
        await owner.execute("SET LOCAL session_replication_role = replica")
        await owner.execute("UPDATE account SET balance_minor = balance_minor + $2 WHERE account_id = $1",
                            account_id, delta_minor)


async def test_a_stored_balance_that_differs_from_its_entries_is_queued_never_fixed(ctx, pool, owner, book):
    user = new_user("balance")
    account_id = await fund_wallet(pool, book, user, 10_00)
    await _shift_balance(owner, account_id, 1)
    try:
        await run_internal(ctx, grace_s=0)
        await run_internal(ctx, grace_s=0)
        rows = await pool.fetch("SELECT kind, disposition FROM recon_break WHERE subject_key = $1",
                                f"account:{account_id}")
        assert [(r["kind"], r["disposition"]) for r in rows] == [("balance_differs_from_entries", "queued")]
        assert await pool.fetchval("SELECT count(*) FROM review_item WHERE subject_key = $1",
                                   f"balance_differs_from_entries:account:{account_id}") == 1
    finally:
        await _shift_balance(owner, account_id, -1)
    await assert_ledger_clean(pool)


async def test_a_failed_payout_still_holding_its_reserve_gets_it_released(ctx, pool, owner, book):
    user = new_user("reserve")
    await fund_wallet(pool, book, user, 30_00)
    payout = await _order(pool, "payout", amount_minor=30_00, user=user)
    # Failed without its release (a crash between the two, or a hand's edit): as the owner.
    await owner.execute("UPDATE payment_order SET payment_order_status = 'failed', updated_at = now() - interval '1 hour' "
                        "WHERE payment_order_id = $1", payout)
    await run_internal(ctx, grace_s=0)
    assert [(b["kind"], b["fix"]) for b in await _breaks(pool, payout)] == [("reserve_without_live_payout",
                                                                            "reserve_released")]
    assert await pool.fetchval("SELECT balance_minor FROM account WHERE code = $1", f"wallet:{user}") == 30_00
    await run_internal(ctx, grace_s=0)
    assert len(await _breaks(pool, payout)) == 1
    await assert_ledger_clean(pool)


async def test_the_release_path_refuses_an_order_that_does_not_justify_it(pool, book):
    import asyncpg
    user = new_user("refused")
    await fund_wallet(pool, book, user, 5_00)
    live = await _order(pool, "payout", amount_minor=5_00, user=user)
    with pytest.raises(asyncpg.CheckViolationError, match="does not justify"):
        await pool.fetch("SELECT * FROM post_recon_release($1, $2)", user, uuid.UUID(live))
    with pytest.raises(asyncpg.CheckViolationError, match="no settlement file"):
        await pool.fetch("SELECT * FROM post_settlement_fees('recon:stripe', $1)", b"\0" * 32)


async def test_webhook_events_left_unapplied_are_redriven_or_queued(ctx, pool, settings):
    fresh, spent = f"evt_{uuid.uuid4().hex}", f"evt_{uuid.uuid4().hex}"
    for event_id, attempts in ((fresh, 1), (spent, settings.psp_event_apply_attempts_max)):
        await pool.execute(
            """INSERT INTO psp_event (connector, event_id, kind, type, event, raw_body, received_at, apply_attempts,
                                      result)
               VALUES ('test', $1, 'outcome', 'charge.succeeded', '{}'::jsonb, '\\x7b7d', now() - interval '2 hours',
                       $2, 'unmatched')""", event_id, attempts)
    await run_internal(ctx, grace_s=60)
    await run_internal(ctx, grace_s=60)
    rows = {r["subject_key"]: (r["kind"], r["disposition"], r["fix"]) for r in await pool.fetch(
        "SELECT subject_key, kind, disposition, fix FROM recon_break WHERE subject_key = ANY($1::text[])",
        [f"event:test:{fresh}", f"event:test:{spent}"])}
    assert rows == {f"event:test:{fresh}": ("webhook_not_applied", "fixed", "event_redriven"),
                    f"event:test:{spent}": ("webhook_unapplicable", "queued", None)}


async def test_a_break_an_earlier_run_left_unsettled_is_settled_by_the_next_hourly_run(ctx, pool):
    from paycell.store import reconcile as store
    async with pool.acquire() as conn:
        run_id = await store.start_run(conn, owner="recon:stripe", kind="settlement", connector="stripe",
                                       sha256=uuid.uuid4().bytes * 2)
        subject = f"line:{uuid.uuid4().hex}:1"
        await conn.execute("""INSERT INTO recon_break (owner_id, break_id, kind, subject_key, run_id, evidence, created_at)
                              VALUES ('recon:stripe', gen_random_uuid(), 'missing_ours', $1, $2, '{}'::jsonb,
                                      now() - interval '2 hours')""", subject, run_id)
    await run_internal(ctx, grace_s=0)
    row = await pool.fetchrow("SELECT disposition, review_id FROM recon_break WHERE subject_key = $1", subject)
    assert row["disposition"] == "queued" and row["review_id"] is not None


async def test_a_psp_that_does_not_answer_is_asked_once_per_run_and_nothing_is_decided(ctx, pool, psp_sim):
    import aiohttp
    from tests.helpers import sim_post
    first, second = await _order(pool), await _order(pool)
    await sim_post(psp_sim, "/_sim/faults", {"outage": True})
    try:
        run = await run_internal(ctx, grace_s=0)
    finally:
        async with aiohttp.ClientSession() as http, http.delete(f"{psp_sim}/_sim/faults") as r:
            assert r.status == 200
    assert await _breaks(pool, first) == [] and await _breaks(pool, second) == []
    assert await _state(pool, first) == "psp_submitting" and await _state(pool, second) == "psp_submitting"
    assert run.finished_at is not None
    await run_internal(ctx, grace_s=0)  # answered now: neither was charged, both fail
    assert [b["kind"] for b in await _breaks(pool, first)] == ["psp_failed_still_pending"]
