import asyncio

import pytest

from paycell.store import wallets
from tests.helpers import assert_ledger_clean, fund_wallet, new_user, post_transfer


async def test_a_transfer_moves_money_between_wallets(pool, book):
    alice, bob = new_user("alice"), new_user("bob")
    a = await fund_wallet(pool, book, alice, 10_00)
    posting = await post_transfer(pool, alice, bob, 4_00)
    assert not posting.replayed
    assert sorted((e.amount_minor, e.account_id == a) for e in posting.entries) == [(-4_00, True), (4_00, False)]
    assert [w.available_minor for w in await wallets.balances(pool, alice)] == [6_00]
    assert [w.available_minor for w in await wallets.balances(pool, bob)] == [4_00]
    await assert_ledger_clean(pool)


async def test_an_account_created_in_a_rolled_back_transaction_is_not_remembered(pool, book):
    user = new_user()

    class Abort(Exception):
        """Rolls the transaction back."""

    with pytest.raises(Abort):
        async with pool.acquire() as conn, conn.transaction():
            await book.user_account(conn, "user_wallet", user, "EUR")
            raise Abort
    await fund_wallet(pool, book, user, 3_00, "EUR")  # would name a never-committed account id if cached
    assert [(w.currency, w.available_minor) for w in await wallets.balances(pool, user)] == [("EUR", 3_00)]
    await assert_ledger_clean(pool)


async def test_concurrent_first_use_of_one_account_from_many_transactions(pool, book):
    user = new_user()

    async def fund():
        await fund_wallet(pool, book, user, 1_00)

    await asyncio.gather(*(fund() for _ in range(10)))
    assert [w.available_minor for w in await wallets.balances(pool, user)] == [10_00]
    await assert_ledger_clean(pool)
