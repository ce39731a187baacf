"""Property tests of the ledger: random transfers between random wallets, run concurrently from
several connections, never overdraw a wallet, never create or destroy money, and a refused
transfer leaves no trace. Each transfer is a real transfer order posted through post_order (the
only way the app role can post), in one database transaction with the order's insert.

The examples are drawn by hypothesis; each one runs on a fresh event loop (in a worker thread)
with its own small asyncpg pool, so nothing here depends on the session loop the async tests
share.
"""
from __future__ import annotations

import asyncio
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from hypothesis import HealthCheck, event, given, settings as hsettings, strategies as st

from paycell.errors import InsufficientFunds
from paycell.store import ledger, payments
from paycell.store.accounts import AccountBook
from paycell.store.db import create_pool
from tests.helpers import assert_ledger_clean, fund_wallet, new_order, new_user
from tests.helpers import lock_by_id

CURRENCIES = ("USD", "JPY")

# -- the examples ---------------------------------------------------------------------------


class Transfer:
    """`src` pays (dst, amount) in `currency`: one transfer order, one posting of two legs."""

    def __init__(self, src: int, payees: tuple[tuple[int, int], ...], currency: str):
        self.src, self.payees, self.currency = src, payees, currency

    @property
    def total(self) -> int:
        return sum(amount for _, amount in self.payees)

    def __repr__(self) -> str:
        return f"Transfer({self.src}->{list(self.payees)} {self.currency})"


@st.composite
def scenarios(draw, max_transfers: int = 30):
    n = draw(st.integers(5, 8))
    # About one wallet in five empty, the others small enough that overdrafts are common.
    amount = st.integers(-1_000, 5_000).map(lambda a: max(a, 0))
    funding = {(u, c): draw(amount) for u in range(n) for c in CURRENCIES}

    @st.composite
    def transfer(draw):
        src = draw(st.integers(0, n - 1))
        others = [u for u in range(n) if u != src]
        dsts = draw(st.lists(st.sampled_from(others), min_size=1, max_size=1, unique=True))
        return Transfer(src, tuple((d, draw(st.integers(1, 2_000))) for d in dsts),
                        draw(st.sampled_from(CURRENCIES)))

    transfers = draw(st.lists(transfer(), min_size=4, max_size=max_transfers))
    return n, funding, transfers


# -- running an example ---------------------------------------------------------------------


def _run(coro_fn, *args):
    """Run an async body to completion on a new event loop in a worker thread."""
    with ThreadPoolExecutor(1) as ex:
        return ex.submit(asyncio.run, coro_fn(*args)).result(timeout=120)


class World:
    """The users and wallets of one example, on its own pool."""

    def __init__(self, pool, book, users, wallet_ids):
        self.pool, self.book, self.users, self.wallet_ids = pool, book, users, wallet_ids
        self.order_ids: dict[int, str] = {}  # transfer k -> its order (rolled back when refused)

    def key(self, k: int) -> str:
        return f"{self.order_ids[k]}:transfer"

    async def balances(self) -> dict[tuple[int, str], int]:
        rows = await self.pool.fetch("SELECT account_id, balance_minor FROM account WHERE account_id = ANY($1::bigint[])",
                                     list(self.wallet_ids.values()))
        by_id = {r["account_id"]: r["balance_minor"] for r in rows}
        return {uc: by_id[aid] for uc, aid in self.wallet_ids.items()}

    async def entry_count(self) -> int:
        return await self.pool.fetchval("SELECT count(*) FROM ledger_entry WHERE account_id = ANY($1::bigint[])",
                                        list(self.wallet_ids.values()))

    async def posted_keys(self) -> Counter:
        """Entries stored per key of this example's transfers."""
        rows = await self.pool.fetch(
            """SELECT t.idempotency_key AS key, count(e.entry_id) AS n
                 FROM ledger_transaction t LEFT JOIN ledger_entry e USING (transaction_id)
                WHERE t.idempotency_key = ANY($1::text[]) GROUP BY t.idempotency_key""",
            [self.key(k) for k in self.order_ids])
        return Counter({r["key"]: r["n"] for r in rows})


async def _setup(settings, n, funding) -> World:
    pool = await create_pool(settings, size_max=8)
    book = AccountBook.from_settings(settings)
    users = [new_user("prop") for _ in range(n)]
    wallet_ids = {}
    for (u, c), amount in funding.items():
        if amount:
            wallet_ids[u, c] = await fund_wallet(pool, book, users[u], amount, c)
        else:
            async with pool.acquire() as conn:
                wallet_ids[u, c] = await book.user_account(conn, "user_wallet", users[u], c)
    return World(pool, book, users, wallet_ids)


async def _attempt(world: World, conn, k: int, t: Transfer) -> ledger.Posting | None:
    """Post transfer k in its own database transaction; None when it would overdraw."""
    (dst, amount), = t.payees
    try:
        async with conn.transaction():
            order_id = world.order_ids[k] = await new_order(conn, world.users[t.src], "transfer", amount, t.currency,
                                                            to_user=world.users[dst])
            order = await lock_by_id(conn, order_id)
            posting = await ledger.post_order(conn, world.users[t.src], order_id, "transfer", system_slices=1)
            await payments.move(conn, order, "completed", event="order.posted", ledger_updated=True,
                                wallet_updated=True)
            return posting
    except InsufficientFunds:
        return None


def _apply(balances: dict, t: Transfer) -> None:
    balances[t.src, t.currency] -= t.total
    for d, amount in t.payees:
        balances[d, t.currency] += amount


# -- the properties -------------------------------------------------------------------------


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(example=scenarios(), connections=st.integers(4, 8))
def test_concurrent_transfers_never_overdraw_and_never_create_or_destroy_money(migrated, example, connections):
    n, funding, transfers = example

    async def body():
        world = await _setup(migrated, n, funding)
        try:
            before = await world.balances()
            assert before == funding
            entries_before = await world.entry_count()
            lanes = [list(enumerate(transfers))[i::connections] for i in range(connections)]
            start = asyncio.Barrier(connections)
            outcomes: dict[int, ledger.Posting | None] = {}

            async def lane(work):
                async with world.pool.acquire() as conn:
                    await start.wait()
                    for k, t in work:
                        outcomes[k] = await _attempt(world, conn, k, t)

            await asyncio.gather(*(lane(work) for work in lanes))
            await assert_ledger_clean(world.pool)

            after = await world.balances()
            # No wallet below zero, and the money only moved between these users.
            assert min(after.values()) >= 0
            for c in CURRENCIES:
                assert sum(v for (u, cur), v in after.items() if cur == c) == \
                       sum(v for (u, cur), v in before.items() if cur == c)
            # The final balances are the funding plus exactly the transfers that were posted.
            expected = dict(before)
            for k, t in enumerate(transfers):
                if outcomes[k] is not None:
                    _apply(expected, t)
            assert after == expected

            # A refused transfer wrote nothing: no ledger transaction under its key, no entries.
            posted = {k for k, p in outcomes.items() if p is not None}
            stored = await world.posted_keys()
            assert set(stored) == {world.key(k) for k in posted}, "a refused transfer left a ledger transaction"
            for k in posted:
                assert stored[world.key(k)] == len(outcomes[k].entries) == 1 + len(transfers[k].payees)
            assert await world.entry_count() == entries_before + sum(1 + len(transfers[k].payees) for k in posted)

            # Whatever the interleaving: a transfer larger than its payer's funding plus every
            # payment it could possibly have received is refused; one that fits even if all the
            # payer's other transfers went first and nothing came in is posted.
            for k, t in enumerate(transfers):
                incoming = sum(a for j, o in enumerate(transfers) if j != k and o.currency == t.currency
                               for d, a in o.payees if d == t.src)
                outgoing = sum(o.total for j, o in enumerate(transfers)
                               if j != k and o.currency == t.currency and o.src == t.src)
                if t.total > funding[t.src, t.currency] + incoming:
                    assert outcomes[k] is None, f"transfer {k} {t} cannot have been covered"
                if t.total + outgoing <= funding[t.src, t.currency]:
                    assert outcomes[k] is not None, f"transfer {k} {t} was always covered"
            await assert_ledger_clean(world.pool)
            return len(posted), len(transfers) - len(posted)
        finally:
            await world.pool.close()

    posted, refused = _run(body)
    event(f"transfers refused: {'none' if not refused else 'all' if not posted else 'some'}")


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(example=scenarios())
def test_sequential_transfers_match_a_model_of_the_wallets(migrated, example):
    """One after the other, the outcome is deterministic: a model of plain integers predicts
    which transfers are refused, every entry's balance_after, and the final balances."""
    n, funding, transfers = example

    async def body():
        world = await _setup(migrated, n, funding)
        try:
            model = dict(funding)
            posted = []
            entries_before = await world.entry_count()
            async with world.pool.acquire() as conn:
                for k, t in enumerate(transfers):
                    posting = await _attempt(world, conn, k, t)
                    if model[t.src, t.currency] < t.total:
                        assert posting is None, f"transfer {k} {t} overdrew {model[t.src, t.currency]}"
                        continue
                    assert posting is not None, f"transfer {k} {t} refused with {model[t.src, t.currency]}"
                    _apply(model, t)
                    posted.append(k)
                    by_account = {world.wallet_ids[u, t.currency]: model[u, t.currency]
                                  for u in [t.src] + [d for d, _ in t.payees]}
                    assert {e.account_id: e.balance_after_minor for e in posting.entries} == by_account
            await assert_ledger_clean(world.pool)
            assert await world.balances() == model
            # The refused transfers wrote nothing; the posted ones wrote one entry per leg.
            assert await world.posted_keys() == Counter({world.key(k): 1 + len(transfers[k].payees) for k in posted})
            assert await world.entry_count() == entries_before + sum(1 + len(transfers[k].payees) for k in posted)
            await assert_ledger_clean(world.pool)
        finally:
            await world.pool.close()

    _run(body)


async def test_property_examples_leave_the_shared_ledger_clean(pool):
    await assert_ledger_clean(pool)
