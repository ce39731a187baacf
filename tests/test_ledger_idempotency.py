"""A ledger posting is keyed: the same key posts once, however many times and from however many
connections it is sent, and a key can never be reused for other entries."""
from __future__ import annotations

import asyncio
import uuid

import pytest

from paycell.errors import LedgerKeyReused
from paycell.store import ledger, wallets
from tests.helpers import assert_ledger_clean, fund_wallet, funded_pair, new_user


@pytest.fixture
async def pair(pool, book):
    """Alice holds 100.00 USD, Bob has an empty wallet."""
    return await funded_pair(pool, book, 100_00)


def _transfer(a: int, b: int, amount_minor: int) -> list[ledger.Leg]:
    return [ledger.Leg(a, -amount_minor, "USD"), ledger.Leg(b, amount_minor, "USD")]


async def _available(pool, user: str, currency: str = "USD") -> int:
    return sum(w.available_minor for w in await wallets.balances(pool, user) if w.currency == currency)


async def _written(pool, key: str) -> tuple[int, int]:
    """(transactions, entries) stored under `key`."""
    row = await pool.fetchrow(
        """SELECT count(DISTINCT t.transaction_id) AS t, count(e.entry_id) AS e
             FROM ledger_transaction t LEFT JOIN ledger_entry e USING (transaction_id)
            WHERE t.idempotency_key = $1""", key)
    return row["t"], row["e"]


async def _post(pool, key: str, legs, kind: str = "transfer") -> ledger.Posting:
    async with pool.acquire() as conn, conn.transaction():
        return await ledger.post(conn, key=key, kind=kind, legs=legs)


async def test_posting_the_same_key_twice_posts_once_and_replays_the_first(pool, pair):
    alice, bob, a, b = pair
    key = f"idem:{uuid.uuid4()}"
    first = await _post(pool, key, _transfer(a, b, 30_00))
    second = await _post(pool, key, _transfer(a, b, 30_00))
    assert not first.replayed and second.replayed
    assert second.transaction_id == first.transaction_id
    assert sorted(second.entries, key=lambda e: e.entry_id) == sorted(first.entries, key=lambda e: e.entry_id)
    assert await _written(pool, key) == (1, 2)
    assert (await _available(pool, alice), await _available(pool, bob)) == (70_00, 30_00)
    await assert_ledger_clean(pool)


async def test_a_replay_may_list_the_legs_in_another_order(pool, pair):
    alice, bob, a, b = pair
    key = f"idem-order:{uuid.uuid4()}"
    first = await _post(pool, key, _transfer(a, b, 10_00))
    second = await _post(pool, key, _transfer(a, b, 10_00)[::-1])
    assert second.replayed and second.transaction_id == first.transaction_id
    assert (await _available(pool, alice), await _available(pool, bob)) == (90_00, 10_00)
    await assert_ledger_clean(pool)


async def test_a_replay_inside_the_same_database_transaction_posts_once(pool, pair):
    alice, bob, a, b = pair
    key = f"idem-same-txn:{uuid.uuid4()}"
    async with pool.acquire() as conn, conn.transaction():
        first = await ledger.post(conn, key=key, kind="transfer", legs=_transfer(a, b, 5_00))
        second = await ledger.post(conn, key=key, kind="transfer", legs=_transfer(a, b, 5_00))
    assert second.replayed and second.transaction_id == first.transaction_id
    assert await _written(pool, key) == (1, 2)
    assert (await _available(pool, alice), await _available(pool, bob)) == (95_00, 5_00)
    await assert_ledger_clean(pool)


@pytest.mark.parametrize("change", ["amount", "account", "currency", "kind", "extra leg"])
async def test_the_same_key_with_other_entries_is_refused(pool, book, pair, change):
    alice, bob, a, b = pair
    key = f"idem-reuse:{uuid.uuid4()}"
    await _post(pool, key, _transfer(a, b, 20_00))
    async with pool.acquire() as conn:
        carol = await book.user_account(conn, "user_wallet", new_user("carol"), "USD")
        a_jpy = await fund_wallet(pool, book, alice, 5_000, "JPY")
        b_jpy = await book.user_account(conn, "user_wallet", bob, "JPY")
    legs, kind = {
        "amount": (_transfer(a, b, 20_01), "transfer"),
        "account": (_transfer(a, carol, 20_00), "transfer"),
        "currency": (_transfer(a_jpy, b_jpy, 20_00), "transfer"),
        "kind": (_transfer(a, b, 20_00), "payout"),
        "extra leg": (_transfer(a, b, 20_00) + _transfer(a, carol, 1_00), "transfer"),
    }[change]
    with pytest.raises(LedgerKeyReused):
        await _post(pool, key, legs, kind)
    assert await _written(pool, key) == (1, 2)
    assert (await _available(pool, alice), await _available(pool, bob)) == (80_00, 20_00)
    assert (await _available(pool, alice, "JPY"), await _available(pool, bob, "JPY")) == (5_000, 0)
    await assert_ledger_clean(pool)


@pytest.mark.parametrize("connections", [2, 10])
async def test_the_same_key_from_concurrent_connections_posts_exactly_once(pool, pair, connections):
    alice, bob, a, b = pair
    key = f"idem-race:{uuid.uuid4()}"
    ready = asyncio.Barrier(connections)

    async def attempt():
        # Each attempt holds its own connection and database transaction, and all of them post
        # at the same moment: the losers wait on the key's unique index, then replay.
        async with pool.acquire() as conn, conn.transaction():
            await ready.wait()
            return await ledger.post(conn, key=key, kind="transfer", legs=_transfer(a, b, 12_34))

    postings = await asyncio.wait_for(asyncio.gather(*(attempt() for _ in range(connections))), timeout=30)
    assert sum(not p.replayed for p in postings) == 1
    assert len({p.transaction_id for p in postings}) == 1
    assert await _written(pool, key) == (1, 2)
    assert (await _available(pool, alice), await _available(pool, bob)) == (100_00 - 12_34, 12_34)
    await assert_ledger_clean(pool)


async def test_a_concurrent_reuse_of_a_key_with_other_entries_is_refused(pool, pair):
    """The first of two racing postings wins; the other, with other entries, is refused."""
    alice, bob, a, b = pair
    key = f"idem-race-reuse:{uuid.uuid4()}"
    ready = asyncio.Barrier(2)

    async def attempt(amount_minor):
        async with pool.acquire() as conn, conn.transaction():
            await ready.wait()
            return await ledger.post(conn, key=key, kind="transfer", legs=_transfer(a, b, amount_minor))

    results = await asyncio.gather(attempt(1_00), attempt(2_00), return_exceptions=True)
    winners = [r for r in results if isinstance(r, ledger.Posting)]
    assert len(winners) == 1 and not winners[0].replayed
    assert [type(r) for r in results if not isinstance(r, ledger.Posting)] == [LedgerKeyReused]
    moved = 1_00 if results[0] is winners[0] else 2_00
    assert await _written(pool, key) == (1, 2)
    assert (await _available(pool, alice), await _available(pool, bob)) == (100_00 - moved, moved)
    await assert_ledger_clean(pool)


async def test_a_key_whose_first_posting_rolled_back_can_be_posted_again(pool, pair):
    alice, bob, a, b = pair
    key = f"idem-rollback:{uuid.uuid4()}"

    class Abort(Exception):
        """Rolls the transaction back."""

    with pytest.raises(Abort):
        async with pool.acquire() as conn, conn.transaction():
            await ledger.post(conn, key=key, kind="transfer", legs=_transfer(a, b, 7_00))
            raise Abort  # e.g. the caller's next step failed: nothing of the posting survives
    assert await _written(pool, key) == (0, 0)
    posting = await _post(pool, key, _transfer(a, b, 7_00))
    assert not posting.replayed
    assert (await _available(pool, alice), await _available(pool, bob)) == (93_00, 7_00)
    await assert_ledger_clean(pool)
