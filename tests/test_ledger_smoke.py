from paycell.store import ledger, wallets
from tests.helpers import assert_ledger_clean, fund_wallet, new_user


async def test_a_transfer_moves_money_between_wallets(pool, book):
    alice, bob = new_user("alice"), new_user("bob")
    a = await fund_wallet(pool, book, alice, 10_00)
    async with pool.acquire() as conn, conn.transaction():
        b = await book.user_account(conn, "user_wallet", bob, "USD")
        posting = await ledger.post(conn, key=f"t:{alice}", kind="transfer",
                                    legs=[ledger.Leg(a, -4_00, "USD"), ledger.Leg(b, 4_00, "USD")])
    assert not posting.replayed
    assert [w.available_minor for w in await wallets.balances(pool, alice)] == [6_00]
    assert [w.available_minor for w in await wallets.balances(pool, bob)] == [4_00]
    await assert_ledger_clean(pool)
