"""Settlement reconciliation of Stripe's itemized balance change report, written by the Stripe
simulator's own report builder: matched lines post their fees, every kind of break is classified,
safe ones are fixed, the others queued once; re-running a file changes nothing."""
from __future__ import annotations

import datetime

from paycell.reconcile import settlement
from tests.helpers import assert_ledger_clean
from tests.reconcile.conftest import paid, stripe_file, stripe_txn, window


async def _breaks(pool, run_id: str) -> dict[str, list]:
    rows = await pool.fetch("""SELECT kind, disposition, fix, payment_order_id::text, review_id::text
                                 FROM recon_break WHERE run_id = $1""", run_id)
    out: dict[str, list] = {}
    for r in rows:
        out.setdefault(r["kind"], []).append(r)
    return out


async def test_matched_lines_post_their_fees_once_and_the_ledger_stays_clean(ctx, pool, tmp_path, since):
    a, b = await paid(pool, "stripe", 12_50), await paid(pool, "stripe", 99_99)
    path = stripe_file(tmp_path, [stripe_txn(a), stripe_txn(b)])
    fees_before = await pool.fetchval("SELECT coalesce(sum(balance_minor), 0) FROM account WHERE code = 'fees:stripe'")
    done = await settlement.reconcile_file(ctx, "stripe", path, period=window(since))
    assert not done.replayed
    assert done.run.counts == {} and done.run.lines == 2, done.run
    expected_fees = 66 + (9_999 * 29 + 500) // 1000 + 30
    assert done.run.totals["USD"]["matched"] == 2
    assert done.run.totals["USD"]["fees_posted_minor"] == expected_fees
    fees_after = await pool.fetchval("SELECT sum(balance_minor) FROM account WHERE code = 'fees:stripe'")
    assert fees_after - fees_before == -expected_fees
    again = await settlement.reconcile_file(ctx, "stripe", path, period=window(since))
    assert again.replayed and again.run.run_id == done.run.run_id
    assert await pool.fetchval("SELECT sum(balance_minor) FROM account WHERE code = 'fees:stripe'") == fees_after
    await assert_ledger_clean(pool)


async def test_each_settlement_break_is_classified_and_queued_once(ctx, pool, tmp_path, since):
    ok = await paid(pool, "stripe", 10_00)
    wrong_amount = await paid(pool, "stripe", 20_00)
    wrong_currency = await paid(pool, "stripe", 30_00)
    doubled = await paid(pool, "stripe", 40_00)
    not_at_psp = await paid(pool, "stripe", 50_00)
    failed = await paid(pool, "stripe", 60_00, settle=False, state="failed")
    stranger = await paid(pool, "stripe", 70_00)
    stranger_order_id = stranger.order_id
    stranger.order_id, stranger.psp_reference = "00000000-0000-4000-8000-000000000001", "pi_unknown"
    txns = [stripe_txn(ok), stripe_txn(wrong_amount, gross_minor=20_01), stripe_txn(wrong_currency, currency="EUR"),
            stripe_txn(doubled), stripe_txn(doubled), stripe_txn(failed), stripe_txn(stranger)]
    done = await settlement.reconcile_file(ctx, "stripe", stripe_file(tmp_path, txns), period=window(since))
    found = await _breaks(pool, done.run.run_id)
    # The stranger's line names no order of ours; its real order, settled in the window, is on no line.
    assert {k: sorted(str(r["payment_order_id"]) for r in v) for k, v in found.items()} == {
        "amount_mismatch": [wrong_amount.order_id], "currency_mismatch": [wrong_currency.order_id],
        "duplicate": [doubled.order_id], "status_settled_order_failed": [failed.order_id],
        "missing_ours": ["None"], "missing_psp": sorted([not_at_psp.order_id, stranger_order_id]),
    }
    assert all(r["disposition"] == "queued" and r["review_id"] for v in found.values() for r in v)
    items = await pool.fetchval("""SELECT count(*) FROM review_item
                                    WHERE user_id = 'recon:stripe' AND evidence->>'run_id' = $1""", done.run.run_id)
    assert items == sum(len(v) for v in found.values())
    assert done.run.queued == items and done.run.auto_fixed == 0
    await assert_ledger_clean(pool)


async def test_a_settled_line_for_an_order_we_left_pending_completes_it(ctx, pool, tmp_path, since):
    stuck = await paid(pool, "stripe", 15_00, settle=False, state="psp_pending")
    done = await settlement.reconcile_file(ctx, "stripe", stripe_file(tmp_path, [stripe_txn(stuck)]), period=window(since))
    [brk] = (await _breaks(pool, done.run.run_id))["status_settled_order_live"]
    assert brk["disposition"] == "fixed" and brk["fix"] == "completed_and_posted"
    assert await pool.fetchval("SELECT payment_order_status FROM payment_order WHERE payment_order_id = $1",
                               stuck.order_id) == "completed"
    events = await pool.fetch("SELECT type FROM event WHERE payment_order_id = $1 ORDER BY event_id", stuck.order_id)
    assert "order.reconciled" in [e["type"] for e in events]
    assert done.run.auto_fixed == 1
    await assert_ledger_clean(pool)


async def test_a_dispute_line_for_a_completed_order_posts_the_return(ctx, pool, tmp_path, since):
    disputed = await paid(pool, "stripe", 25_00)
    txns = [stripe_txn(disputed, gross_minor=-25_00, category="dispute", fee_minor=15_00)]
    day = datetime.datetime.now(datetime.timezone.utc).date()
    done = await settlement.reconcile_file(ctx, "stripe", stripe_file(tmp_path, txns, day=day), period=window(since))
    [brk] = (await _breaks(pool, done.run.run_id))["status_returned_order_completed"]
    assert brk["fix"] == "return_posted"
    assert await pool.fetchval("SELECT payment_order_status FROM payment_order WHERE payment_order_id = $1",
                               disputed.order_id) == "returned"
    await assert_ledger_clean(pool)
