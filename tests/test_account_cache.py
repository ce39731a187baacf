"""The per-process account-id cache is bounded: it evicts at its bound and nothing posts wrong after."""
from __future__ import annotations

import pytest

from paycell.config import load
from paycell.store import wallets
from paycell.store.accounts import AccountBook
from tests.helpers import assert_ledger_clean, fund_wallet, new_user, post_transfer

BOUND = 8
USERS = 30


def test_the_bound_comes_from_settings():
    settings = load(account_cache_entries_max=3)
    book = AccountBook.from_settings(settings)
    assert book._ids.maxsize == 3
    with pytest.raises(ValueError):
        AccountBook(4, entries_max=0)


async def test_account_cache_evicts_at_its_bound_and_postings_stay_right_after_eviction(pool, settings):
    book = AccountBook(settings.system_account_slices, entries_max=BOUND)
    users = [new_user("lru") for _ in range(USERS)]
    credited: dict[str, int] = {}
    for user in users:
        credited[user] = await fund_wallet(pool, book, user, 10_00)
    # Resolve every wallet through the book: USERS wallets through a cache of BOUND entries.
    first_ids: dict[str, int] = {}
    async with pool.acquire() as conn:
        for user in users:
            first_ids[user] = await book.user_account(conn, "user_wallet", user, "USD")
    assert book.cached == BOUND
    assert book.evictions == USERS - BOUND
    assert first_ids == credited  # the id the book gives is the account the posting credited

    # Post after eviction: each of the first users (long evicted) pays the next one 1.00.
    early = users[: USERS - BOUND]
    for payer, payee in zip(early, early[1:]):
        posting = await post_transfer(pool, payer, payee, 1_00)
        legs = {e.account_id: e.amount_minor for e in posting.entries}
        async with pool.acquire() as conn:  # evicted: read from Postgres again, the same ids
            payer_id = await book.user_account(conn, "user_wallet", payer, "USD")
            payee_id = await book.user_account(conn, "user_wallet", payee, "USD")
        assert (payer_id, payee_id) == (first_ids[payer], first_ids[payee])
        assert legs == {payer_id: -1_00, payee_id: 1_00}
    assert book.cached == BOUND
    assert book.evictions > USERS - BOUND

    expected = {u: 10_00 for u in users}
    for payer, payee in zip(early, early[1:]):
        expected[payer] -= 1_00
        expected[payee] += 1_00
    for user in users:
        [balance] = await wallets.balances(pool, user)
        assert (balance.currency, balance.available_minor) == ("USD", expected[user]), user
    await assert_ledger_clean(pool)
