"""A ledger posting is keyed `<order_id>:<step>`: the same step of an order posts once, however
many times and from however many connections it is sent; a second call returns the first
posting. Since the legs come from the order (post_order, migration 0008), a key can never be
posted with other entries."""
from __future__ import annotations

import asyncio

import pytest

from paycell.store import ledger, payments, wallets
from tests.helpers import assert_ledger_clean, funded_pair, new_order
from tests.helpers import lock_by_id


@pytest.fixture
async def pair(pool, book):
    """Alice holds 100.00 USD, Bob has an empty wallet."""
    return await funded_pair(pool, book, 100_00)


async def _available(pool, user: str, currency: str = "USD") -> int:
    return sum(w.available_minor for w in await wallets.balances(pool, user) if w.currency == currency)


async def _written(pool, key: str) -> tuple[int, int]:
    """(transactions, entries) stored under `key`."""
    row = await pool.fetchrow(
        """SELECT count(DISTINCT t.transaction_id) AS t, count(e.entry_id) AS e
             FROM ledger_transaction t LEFT JOIN ledger_entry e USING (transaction_id)
            WHERE t.idempotency_key = $1""", key)
    return row["t"], row["e"]


async def _transfer_order(pool, alice: str, bob: str, amount_minor: int) -> str:
    async with pool.acquire() as conn:
        return await new_order(conn, alice, "transfer", amount_minor, to_user=bob)


async def _post(pool, user_id: str, order_id: str) -> ledger.Posting:
    async with pool.acquire() as conn, conn.transaction():
        return await ledger.post_order(conn, user_id, order_id, "transfer", system_slices=4)


async def _complete(pool, order_id: str) -> None:
    async with pool.acquire() as conn, conn.transaction():
        order = await lock_by_id(conn, order_id)
        await payments.move(conn, order, "completed", event="order.posted", ledger_updated=True, wallet_updated=True)


async def test_posting_the_same_step_twice_posts_once_and_replays_the_first(pool, pair):
    alice, bob, a, b = pair
    order_id = await _transfer_order(pool, alice, bob, 30_00)
    first = await _post(pool, alice, order_id)
    second = await _post(pool, alice, order_id)
    assert not first.replayed and second.replayed
    assert second.transaction_id == first.transaction_id
    assert sorted(second.entries, key=lambda e: e.entry_id) == sorted(first.entries, key=lambda e: e.entry_id)
    assert await _written(pool, f"{order_id}:transfer") == (1, 2)
    assert (await _available(pool, alice), await _available(pool, bob)) == (70_00, 30_00)
    await _complete(pool, order_id)
    await assert_ledger_clean(pool)


async def test_a_replay_after_the_order_moved_on_still_returns_the_first_posting(pool, pair):
    """A late duplicate message finds the order completed: it gets the posting, not an error."""
    alice, bob, a, b = pair
    order_id = await _transfer_order(pool, alice, bob, 10_00)
    first = await _post(pool, alice, order_id)
    await _complete(pool, order_id)
    async with pool.acquire() as conn:  # autocommit: the call is one statement
        second = await ledger.post_order(conn, alice, order_id, "transfer", system_slices=4)
    assert second.replayed and second.transaction_id == first.transaction_id
    assert (await _available(pool, alice), await _available(pool, bob)) == (90_00, 10_00)
    await assert_ledger_clean(pool)


async def test_a_replay_inside_the_same_database_transaction_posts_once(pool, pair):
    alice, bob, a, b = pair
    order_id = await _transfer_order(pool, alice, bob, 5_00)
    async with pool.acquire() as conn, conn.transaction():
        first = await ledger.post_order(conn, alice, order_id, "transfer", system_slices=4)
        second = await ledger.post_order(conn, alice, order_id, "transfer", system_slices=4)
    assert second.replayed and second.transaction_id == first.transaction_id
    assert await _written(pool, f"{order_id}:transfer") == (1, 2)
    assert (await _available(pool, alice), await _available(pool, bob)) == (95_00, 5_00)
    await _complete(pool, order_id)
    await assert_ledger_clean(pool)


@pytest.mark.parametrize("connections", [2, 10])
async def test_the_same_step_from_concurrent_connections_posts_exactly_once(pool, pair, connections):
    alice, bob, a, b = pair
    order_id = await _transfer_order(pool, alice, bob, 12_34)
    ready = asyncio.Barrier(connections)

    async def attempt():
        # Each attempt holds its own connection and database transaction, and all of them post
        # at the same moment: the losers wait on the order's row lock, then replay.
        async with pool.acquire() as conn, conn.transaction():
            await ready.wait()
            return await ledger.post_order(conn, alice, order_id, "transfer", system_slices=4)

    postings = await asyncio.wait_for(asyncio.gather(*(attempt() for _ in range(connections))), timeout=30)
    assert sum(not p.replayed for p in postings) == 1
    assert len({p.transaction_id for p in postings}) == 1
    assert await _written(pool, f"{order_id}:transfer") == (1, 2)
    assert (await _available(pool, alice), await _available(pool, bob)) == (100_00 - 12_34, 12_34)
    await _complete(pool, order_id)
    await assert_ledger_clean(pool)


async def test_a_step_whose_first_posting_rolled_back_can_be_posted_again(pool, pair):
    alice, bob, a, b = pair
    order_id = await _transfer_order(pool, alice, bob, 7_00)

    class Abort(Exception):
        """Rolls the transaction back."""

    with pytest.raises(Abort):
        async with pool.acquire() as conn, conn.transaction():
            await ledger.post_order(conn, alice, order_id, "transfer", system_slices=4)
            raise Abort  # e.g. the caller's next step failed: nothing of the posting survives
    assert await _written(pool, f"{order_id}:transfer") == (0, 0)
    posting = await _post(pool, alice, order_id)
    assert not posting.replayed
    assert (await _available(pool, alice), await _available(pool, bob)) == (93_00, 7_00)
    await _complete(pool, order_id)
    await assert_ledger_clean(pool)
