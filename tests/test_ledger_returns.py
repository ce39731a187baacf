"""post_order's `return` step (migration 0012) in the database itself: a compensating transaction,
never an edit. A pay-in's amount goes back to its PSP's clearing account from the user's wallet as
far as it holds, the rest from receivable:returns; no user balance goes below zero; posted once
per order; refused for an order that is not completed and settled. The ledger check knows what a
return must look like and catches one that does not."""
from __future__ import annotations

import uuid

import asyncpg
import pytest

from paycell.errors import LedgerError
from paycell.store import ledger, payments
from paycell.store.ledger_check import check
from paycell.store.migrate import migrate
from tests.helpers import assert_ledger_clean, new_order, new_user, post_transfer, settle_payin
from tests.test_migrations import fresh  # noqa: F401  (the throwaway-database fixture)
from tests.helpers import lock_by_id


async def _completed_payin(pool, user: str, amount_minor: int) -> str:
    async with pool.acquire() as conn, conn.transaction():
        order_id = await new_order(conn, user, "payin", amount_minor)
        await settle_payin(conn, order_id, psp="test", slices=4)
    return order_id


async def _return(pool, user: str, order_id: str, to: str) -> ledger.Posting:
    """Post the return and move the order on, in one transaction (as apply_event does)."""
    async with pool.acquire() as conn, conn.transaction():
        posting = await ledger.post_order(conn, user, order_id, "return", system_slices=4)
        order = await lock_by_id(conn, order_id)
        await payments.move(conn, order, to, event=f"order.{to}")
    return posting


async def _legs(pool, posting: ledger.Posting) -> dict[str, int]:
    rows = await pool.fetch("""SELECT a.code, e.amount_minor
                                 FROM ledger_entry e JOIN account a USING (user_id, account_id)
                                WHERE e.transaction_id = $1""", posting.transaction_id)
    return {r["code"]: r["amount_minor"] for r in rows}


async def test_a_return_the_wallet_covers_takes_it_all_from_the_wallet(pool):
    user = new_user()
    order_id = await _completed_payin(pool, user, 40_00)
    posting = await _return(pool, user, order_id, "returned")
    assert await _legs(pool, posting) == {f"wallet:{user}": -40_00, "psp_clearing:test": 40_00}
    again = await ledger.post_order(pool, user, order_id, "return", system_slices=4)  # a second delivery
    assert again.replayed and again.transaction_id == posting.transaction_id
    await assert_ledger_clean(pool)


@pytest.mark.parametrize("left_minor", [0, 15_00])
async def test_a_return_beyond_the_wallet_books_the_shortfall_as_receivable_and_nothing_goes_negative(pool, left_minor):
    user = new_user()
    order_id = await _completed_payin(pool, user, 50_00)
    await post_transfer(pool, user, new_user("payee"), 50_00 - left_minor)
    posting = await _return(pool, user, order_id, "needs_attention")
    expected = {"receivable:returns": left_minor - 50_00, "psp_clearing:test": 50_00}
    if left_minor:
        expected[f"wallet:{user}"] = -left_minor  # no zero leg when the wallet is empty
    assert await _legs(pool, posting) == expected
    assert await pool.fetchval("SELECT balance_minor FROM account WHERE code = $1", f"wallet:{user}") == 0
    await assert_ledger_clean(pool)


@pytest.mark.parametrize("path", [(), ("psp_submitting",), ("psp_submitting", "failed")],
                         ids=lambda p: "-".join(p) or "requested")
async def test_a_return_is_refused_for_an_order_that_was_not_completed(pool, path):
    async with pool.acquire() as conn, conn.transaction():
        order_id = await new_order(conn, user := new_user(), "payin", 5_00)
        order = await lock_by_id(conn, order_id)
        for state in path:
            await payments.move(conn, order, state, event=f"order.{state}", psp="test")
    with pytest.raises(LedgerError, match="does not justify"):
        await ledger.post_order(pool, user, order_id, "return", system_slices=4)


async def test_a_return_is_refused_for_a_completed_order_that_was_never_settled(pool):
    async with pool.acquire() as conn, conn.transaction():
        order_id = await new_order(conn, user := new_user(), "payin", 5_00)
        order = await lock_by_id(conn, order_id)
        await payments.move(conn, order, "psp_submitting", event="order.psp_submitting", psp="test")
        await payments.move(conn, order, "completed", event="order.completed")
    with pytest.raises(LedgerError, match="does not justify"):
        await ledger.post_order(pool, user, order_id, "return", system_slices=4)


async def test_the_ledger_check_catches_a_return_that_does_not_look_like_one(fresh):  # noqa: F811
    """What only a superuser could write: a return with the wrong legs, a return of an order that
    was never settled, and an order marked returned with no return posted."""
    from paycell.store.db import connect

    await migrate(fresh)
    app = await connect(fresh.app_database_url)
    admin = await asyncpg.connect(fresh.admin_database_url)
    try:
        legit = await new_order(app, "alice", "payin", 10_00)
        async with app.transaction():
            await settle_payin(app, legit, psp="test")
            await ledger.post_order(app, "alice", legit, "return", system_slices=4)
            await payments.move(app, await lock_by_id(app, legit), "returned", event="order.returned")
        assert (await check(app)).ok, (await check(app)).problems

        forged = await new_order(app, "bob", "payin", 3_00)
        async with app.transaction():
            await settle_payin(app, forged, psp="test")
        unsettled = await new_order(app, "carol", "payin", 2_00)
        bare = await new_order(app, "dave", "payin", 1_00)
        wallet = (await app.fetchval("SELECT ledger_account_ids('user_wallet', 'bob', 'USD', 1)"))[0]
        hold = (await app.fetchval("SELECT ledger_account_ids('payout_hold', 'bob', 'USD', 1)"))[0]

        async def forge(user: str, order_id: str, debit: int, credit: int, amount_minor: int) -> None:
            async with admin.transaction():
                txn = await admin.fetchval(
                    "INSERT INTO ledger_transaction (user_id, idempotency_key, kind, payment_order_id) "
                    "VALUES ($1, $2, 'payin_return', $3) RETURNING transaction_id",
                    user, f"{order_id}:return", uuid.UUID(order_id))
                await admin.execute(
                    "INSERT INTO ledger_entry (transaction_id, user_id, account_id, currency, amount_minor) "
                    "VALUES ($1, 'bob', $2, 'USD', -$4::bigint), ($1, 'bob', $3, 'USD', $4)",
                    txn, debit, credit, amount_minor)

        await forge("bob", forged, wallet, hold, 3_00)  # to the user's payout hold, not the PSP's clearing
        await forge("carol", unsettled, hold, wallet, 2_00)
        async with admin.transaction():
            await admin.execute("SET LOCAL session_replication_role = replica")  # past the order guard
            await admin.execute("UPDATE payment_order SET payment_order_status = 'returned' "
                                "WHERE payment_order_id = ANY($1::uuid[])",
                                [uuid.UUID(forged), uuid.UUID(unsettled), uuid.UUID(bare)])
        report = await check(app)
    finally:
        await app.close()
        await admin.close()
    kinds = {p.split(":")[0] for p in report.problems}
    assert kinds == {"return legs", "return of an unsettled order", "returned without a return posting"}, \
        report.problems
    assert not any(legit in p for p in report.problems)
