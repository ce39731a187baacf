"""Ledger throughput: postings per second through paycell's ledger code, next to the same
transfer in plain SQL (the ceiling), measured in one run so the ratios are comparable.

    .venv/bin/python bench/ledger.py                      # 10 s per scenario, 8 and 32 connections
    .venv/bin/python bench/ledger.py --duration 3 --conns 8   # a quick look

Scenarios, each at every `--conns` count of concurrent connections (one asyncio client process):

  cold    a transfer of 0.01 USD between two random wallets out of 100,000 (2 entries)
  hot     a pay-in of 0.01 USD from the `psp_clearing:bench` system account to a random wallet:
          every posting touches the system account, which paycell splits over
          `settings.system_account_slices` rows (chosen by the posting key)

  paycell   ledger.post_order(order, step) in autocommit: ONE statement, no BEGIN/COMMIT round
            trips. post_order (migration 0008, SECURITY DEFINER) locks the payment order, checks
            its kind and state justify the step, derives the legs from it and posts them
            (transaction row + 2 entries, whose triggers move the balances and check the zero
            sum at commit). Each posting consumes one real order, made in bulk before each slice
            (cold: a transfer order in `requested`; hot: a pay-in order in `psp_submitting`
            with psp `bench`, settled), outside the timed window.
  paytxn    the same call wrapped in BEGIN; ...; COMMIT, as a payment step runs it (inside the
            step's transaction, with the order's move).
  plain     the ceiling: BEGIN; one statement updating two rows of `bench_balance` (in id order)
            and inserting two rows into `bench_entry`; COMMIT (hot: one of the rows is always id 0)
  model     in between, to split paycell's cost: the same transfer as paycell's, written as one
            plain statement (transaction row with its idempotency key, 2 account updates in id
            order, 2 entries with their balance_after) on trigger-less, FK-less copies of
            paycell's own tables (`bench_account`, `bench_ledger_transaction`,
            `bench_ledger_entry`: same columns, CHECKs and indexes). paycell/model is the price of
            the in-database enforcement; model/plain the price of the data model itself.

Everything runs in the database `paycell_bench_ledger` (created and migrated on first use; the plain
and model tables are created there by the admin role and never touch the ledger). The bench
ends with the ledger check of that database. Targets: paycell >= 0.8x plain, hot >= 0.8x cold.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg  # noqa: E402
import msgspec  # noqa: E402

from paycell import logs  # noqa: E402
from paycell.config import load  # noqa: E402
from paycell.config.settings import with_database  # noqa: E402
from paycell.store import ledger  # noqa: E402
from paycell.store.accounts import AccountBook  # noqa: E402
from paycell.store.db import connect, create_pool  # noqa: E402
from paycell.store.ledger_check import check  # noqa: E402
from paycell.store.migrate import migrate  # noqa: E402

BENCH_DB = "paycell_bench_ledger"
WALLET_FUNDS_MINOR = 1_000_000_00
SEED_BATCH = 5_000  # wallets funded per seeding statement (one pay-in order each)

PLAIN_TRANSFER = """
WITH a AS (UPDATE bench_balance SET balance = balance + $2 WHERE id = $1 RETURNING balance),
     b AS (UPDATE bench_balance SET balance = balance + $4
            WHERE id = $3 AND (SELECT count(*) FROM a) = 1 RETURNING balance)  -- after a: id order
INSERT INTO bench_entry (account_id, amount, balance_after)
VALUES ($1, $2, (SELECT balance FROM a)), ($3, $4, (SELECT balance FROM b))
"""

# Rows keyed by user as paycell's (migration 0027): the transaction by its user ($9), an account
# and its entry by the account's user ($7, $8).
MODEL_TRANSFER = """
WITH t AS (INSERT INTO bench_ledger_transaction (user_id, idempotency_key, kind) VALUES ($9, $5, $6)
           ON CONFLICT (user_id, idempotency_key) DO NOTHING RETURNING transaction_id),
     a AS (UPDATE bench_account SET balance_minor = balance_minor + $2, entry_count = entry_count + 1
            WHERE user_id = $7 AND account_id = $1 AND (SELECT count(*) FROM t) = 1 RETURNING balance_minor),
     b AS (UPDATE bench_account SET balance_minor = balance_minor + $4, entry_count = entry_count + 1
            WHERE user_id = $8 AND account_id = $3 AND (SELECT count(*) FROM a) = 1 RETURNING balance_minor)
INSERT INTO bench_ledger_entry (transaction_id, user_id, account_id, currency, amount_minor, balance_after_minor)
SELECT t.transaction_id, e.*
  FROM t, (VALUES ($7::text, $1::bigint, 'USD', $2::bigint, (SELECT balance_minor FROM a)),
                  ($8::text, $3::bigint, 'USD', $4::bigint, (SELECT balance_minor FROM b))) AS e
RETURNING entry_id
"""


def bench_settings(wallets: int):
    settings = load()
    overrides = {"admin_database_url": with_database(settings.admin_database_url, BENCH_DB)}
    if settings.database_url:
        overrides["database_url"] = with_database(settings.database_url, BENCH_DB)
    return msgspec.structs.replace(settings, **overrides)


# -- setup ------------------------------------------------------------------------------------

# Orders the way the API writes them (payment_request + payment_order in `requested`), in bulk:
# one per (payer, payee) row of $1/$2 (payee NULL: a pay-in from a test token into the payer).
MAKE_ORDERS = """
WITH src AS (
    SELECT gen_random_uuid() AS payment_id, gen_random_uuid() AS order_id, payer, payee
      FROM unnest($1::text[], $2::text[]) AS u(payer, payee)
), req AS (
    INSERT INTO payment_request (payment_id, user_id, payment_option, kind, from_acct, to_acct, amount_minor, currency)
    SELECT payment_id, payer, CASE WHEN payee IS NULL THEN 'card' ELSE 'wallet' END,
           CASE WHEN payee IS NULL THEN 'payin' ELSE 'transfer' END,
           CASE WHEN payee IS NULL THEN 'tok_card_ok' ELSE 'wallet:' || payer END,
           CASE WHEN payee IS NULL THEN 'wallet:' || payer ELSE 'wallet:' || payee END, $3, 'USD'
      FROM src
)
INSERT INTO payment_order (payment_order_id, payment_id, user_id, kind, payment_option, from_acct, to_acct,
                           amount_minor, currency, payment_order_status, lease_until, deadline_at)
SELECT order_id, payment_id, payer, CASE WHEN payee IS NULL THEN 'payin' ELSE 'transfer' END,
       CASE WHEN payee IS NULL THEN 'card' ELSE 'wallet' END,
       CASE WHEN payee IS NULL THEN 'tok_card_ok' ELSE 'wallet:' || payer END,
       CASE WHEN payee IS NULL THEN 'wallet:' || payer ELSE 'wallet:' || payee END, $3, 'USD', 'requested',
       now() + interval '1 day', now() + interval '1 day'
  FROM src
RETURNING user_id, payment_order_id::text
"""
# A pay-in's PSP succeeded: the move `settle` is allowed from (along the state table).
TO_PSP = """UPDATE payment_order SET payment_order_status = 'psp_submitting', psp = $2, attempt = 1
             WHERE payment_order_id = ANY($1::uuid[])"""


async def make_orders(conn, payers: list[str], payees: list[str | None], amount_minor: int, *,
                      psp: str | None = None) -> list[tuple[str, str]]:
    """Orders in bulk, as the app role; pay-ins (payee None) moved on to psp_submitting at `psp`.
    Returns (user id, order id) pairs."""
    async with conn.transaction():
        made = [(r[0], r[1]) for r in await conn.fetch(MAKE_ORDERS, payers, payees, amount_minor)]
        if psp:
            await conn.execute(TO_PSP, [order_id for _, order_id in made], psp)
    return made


async def setup(settings, wallets: int) -> tuple[list[int], dict[int, str], AccountBook]:
    """Migrate the bench database, fund `wallets` wallets each through a real pay-in order
    settled by post_order, create the plain tables; returns the wallets' account ids, every
    account's user (account id -> user_id, migration 0027) and a warm AccountBook."""
    t0 = time.perf_counter()
    await migrate(settings)
    book = AccountBook.from_settings(settings)
    conn = await connect(settings.app_database_url)
    try:
        users = [f"bench-{i}" for i in range(1, wallets + 1)]
        await conn.execute("SELECT ledger_account_ids('user_wallet', u, 'USD', 1) FROM unnest($1::text[]) AS u", users)
        ids = [r["account_id"] for r in await conn.fetch(
            """SELECT account_id FROM account
                WHERE code = ANY(SELECT 'wallet:' || u FROM unnest($1::text[]) AS u) AND currency = 'USD'
                ORDER BY account_id""", users)]
        unfunded = [r["owner_id"] for r in await conn.fetch(
            "SELECT owner_id FROM account WHERE account_id = ANY($1::bigint[]) AND entry_count = 0", ids)]
        for i in range(0, len(unfunded), SEED_BATCH):
            batch = unfunded[i:i + SEED_BATCH]
            orders = await make_orders(conn, batch, [None] * len(batch), WALLET_FUNDS_MINOR, psp="bench-seed")
            async with conn.transaction():
                await conn.execute("SELECT count(*) FROM unnest($1::text[], $2::uuid[]) AS o(u, id), "
                                   "LATERAL post_order(o.u, o.id, 'settle', $3)",
                                   [u for u, _ in orders], [o for _, o in orders], settings.system_account_slices)
                await conn.execute("""UPDATE payment_order SET payment_order_status = 'completed',
                                             ledger_updated = true, wallet_updated = true
                                       WHERE payment_order_id = ANY($1::uuid[])""", [o for _, o in orders])
        # Warm the book's cache of the hot account's slices (the model scenario uses it).
        await book.system_account(conn, "psp_clearing", "bench", "USD", key="warm")
    finally:
        await conn.close()

    admin = await asyncpg.connect(settings.admin_database_url)
    try:
        await admin.execute("""
            CREATE TABLE IF NOT EXISTS bench_balance (id bigint PRIMARY KEY, balance bigint NOT NULL);
            CREATE TABLE IF NOT EXISTS bench_entry (
                entry_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                account_id bigint NOT NULL, amount bigint NOT NULL, balance_after bigint NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now())""")
        await admin.execute("""INSERT INTO bench_balance (id, balance)
                               SELECT i, $2 FROM generate_series(0, $1) AS i ON CONFLICT (id) DO NOTHING""",
                            wallets, WALLET_FUNDS_MINOR)
        # The model tables: paycell's tables without triggers or foreign keys, accounts copied
        # (ids included, in one snapshot, so they start balanced) once.
        # Model tables copied before migration 0027 lack the user: made again.
        if await admin.fetchval("""SELECT to_regclass('bench_account') IS NOT NULL AND NOT EXISTS (
                                     SELECT 1 FROM pg_attribute WHERE attrelid = 'bench_account'::regclass
                                        AND attname = 'user_id' AND NOT attisdropped)"""):
            await admin.execute("DROP TABLE bench_account, bench_ledger_transaction, bench_ledger_entry")
        await admin.execute("""
            CREATE TABLE IF NOT EXISTS bench_account (LIKE account INCLUDING ALL);
            CREATE TABLE IF NOT EXISTS bench_ledger_transaction (LIKE ledger_transaction INCLUDING ALL);
            CREATE TABLE IF NOT EXISTS bench_ledger_entry (LIKE ledger_entry INCLUDING ALL);
            CREATE INDEX IF NOT EXISTS bench_ledger_entry_transaction ON bench_ledger_entry (transaction_id);
            CREATE INDEX IF NOT EXISTS bench_ledger_entry_account ON bench_ledger_entry (account_id, entry_id);""")
        if not await admin.fetchval("SELECT EXISTS (SELECT 1 FROM bench_account)"):
            await admin.execute("INSERT INTO bench_account OVERRIDING SYSTEM VALUE SELECT * FROM account")
        for table in ("account", "bench_balance", "bench_account"):
            await admin.execute(f"VACUUM ANALYZE {table}")
        owners = {r["account_id"]: r["user_id"] for r in await admin.fetch("SELECT account_id, user_id FROM account")}
    finally:
        await admin.close()
    print(f"setup: {len(ids):,} funded wallets ({len(unfunded):,} funded now) in {time.perf_counter() - t0:.1f} s",
          flush=True)
    return ids, owners, book


# -- the four operations ----------------------------------------------------------------------

class Ops:
    def __init__(self, wallet_ids: list[int], owners: dict[int, str], book: AccountBook, settings):
        self.wallet_ids, self.owners, self.book, self.settings = wallet_ids, owners, book, settings
        self.run = uuid.uuid4().hex[:10]
        self.n = 0
        self.orders: dict[str, list[tuple[str, str]]] = {"cold": [], "hot": []}  # (user, order): not yet posted

    def key(self) -> str:
        self.n += 1
        return f"bench:{self.run}:{self.n}"

    async def refill(self, conn, mode: str, n: int) -> None:
        """At least `n` unposted orders for `mode`: cold, transfer orders between two random
        bench users in `requested`; hot, pay-in orders in `psp_submitting` at psp `bench`."""
        missing = n - len(self.orders[mode])
        if missing <= 0:
            return
        users = len(self.wallet_ids)
        if mode == "cold":
            pairs = [random.sample(range(1, users + 1), 2) for _ in range(missing)]
            made = await make_orders(conn, [f"bench-{a}" for a, _ in pairs], [f"bench-{b}" for _, b in pairs], 1)
        else:
            payers = [f"bench-{random.randint(1, users)}" for _ in range(missing)]
            made = await make_orders(conn, payers, [None] * missing, 1, psp="bench")
        self.orders[mode].extend(made)

    async def _next(self, conn, mode: str) -> tuple[str, str]:
        if not self.orders[mode]:  # ran dry (the estimate was low): costs this op a batch
            await self.refill(conn, mode, 200)
        return self.orders[mode].pop()

    async def paycell_cold(self, conn):
        await ledger.post_order(conn, *await self._next(conn, "cold"), "transfer",
                                system_slices=self.settings.system_account_slices)

    async def paycell_hot(self, conn):
        await ledger.post_order(conn, *await self._next(conn, "hot"), "settle",
                                system_slices=self.settings.system_account_slices)

    async def paytxn_cold(self, conn):
        user_id, order_id = await self._next(conn, "cold")
        async with conn.transaction():
            await ledger.post_order(conn, user_id, order_id, "transfer",
                                    system_slices=self.settings.system_account_slices)

    async def paytxn_hot(self, conn):
        user_id, order_id = await self._next(conn, "hot")
        async with conn.transaction():
            await ledger.post_order(conn, user_id, order_id, "settle",
                                    system_slices=self.settings.system_account_slices)

    async def model_cold(self, conn):
        a, b = random.sample(self.wallet_ids, 2)
        (lo, d_lo), (hi, d_hi) = sorted([(a, -1), (b, 1)])
        async with conn.transaction():
            await conn.fetch(MODEL_TRANSFER, lo, d_lo, hi, d_hi, self.key(), "transfer",
                             self.owners[lo], self.owners[hi], self.owners[a])

    async def model_hot(self, conn):
        wallet = random.choice(self.wallet_ids)
        # The clearing slice of the wallet's user, as post_order picks it (by user).
        clearing = await self.book.system_account(conn, "psp_clearing", "bench", "USD", key=self.owners[wallet])
        (lo, d_lo), (hi, d_hi) = sorted([(clearing, -1), (wallet, 1)])
        async with conn.transaction():
            await conn.fetch(MODEL_TRANSFER, lo, d_lo, hi, d_hi, self.key(), "payin",
                             self.owners[lo], self.owners[hi], self.owners[wallet])

    async def plain_cold(self, conn):
        a, b = sorted(random.sample(range(1, len(self.wallet_ids) + 1), 2))
        async with conn.transaction():
            await conn.execute(PLAIN_TRANSFER, a, -1, b, 1)

    async def plain_hot(self, conn):
        async with conn.transaction():
            await conn.execute(PLAIN_TRANSFER, 0, -1, random.randint(1, len(self.wallet_ids)), 1)


async def measure(open_pool, op, conns: int, duration_s: float, warmup_s: float) -> tuple[float, int, int]:
    """(postings/s, postings, errors) of `conns` workers, each on its own connection, running
    `op` back to back for `duration_s` after `warmup_s`."""
    pool = await open_pool(conns)
    counts, errors = [0] * conns, [0] * conns
    try:
        t_start = time.perf_counter() + warmup_s
        t_end = t_start + duration_s

        async def worker(i):
            async with pool.acquire() as conn:
                while (now := time.perf_counter()) < t_end:
                    try:
                        await op(conn)
                    except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
                        errors[i] += 1
                        continue
                    if now >= t_start:
                        counts[i] += 1

        await asyncio.gather(*(worker(i) for i in range(conns)))
    finally:
        await pool.close()
    total = sum(counts)
    return total / duration_s, total, sum(errors)


# -- main -------------------------------------------------------------------------------------

async def main(args) -> int:
    settings = bench_settings(args.wallets)
    logs.configure("warning")
    print(f"paycell ledger bench: {BENCH_DB}, {args.wallets:,} wallets, {args.duration:g} s per scenario "
          f"in {args.slices} interleaved slices (+{args.warmup:g} s warm-up each), connections {args.conns}, "
          f"system account slices {settings.system_account_slices}", flush=True)
    wallet_ids, owners, book = await setup(settings, args.wallets)
    ops = Ops(wallet_ids, owners, book, settings)
    maker = await connect(settings.app_database_url)  # makes the orders, outside the timed windows

    def paycell_pool(n):
        return create_pool(settings, size_max=n)

    def plain_pool(n):
        return asyncpg.create_pool(settings.admin_database_url, min_size=n, max_size=n)

    impls = ("paycell", "paytxn", "model", "plain")
    # The machine is shared and noisy: each scenario's time is cut into --slices slices, run
    # round-robin across paycell, paytxn, model and plain, so that a noisy moment hits all alike.
    rate_hint = 5_000.0  # postings/s, for the number of orders to make before a slice
    results: dict[tuple[str, int, str], tuple[float, int, int]] = {}
    groups = [(mode, conns) for conns in args.conns for mode in ("cold", "hot")]
    slice_s = args.duration / args.slices
    for g, (mode, conns) in enumerate(groups, 1):
        done = {impl: [0, 0, []] for impl in impls}  # postings, errors, per-slice rates
        for _ in range(args.slices):
            for impl in impls:
                if impl in ("paycell", "paytxn"):
                    await ops.refill(maker, mode, int(rate_hint * (slice_s + args.warmup) * 1.5) + 1_000)
                rate, n, errors = await measure(paycell_pool if impl in ("paycell", "paytxn") else plain_pool,
                                                getattr(ops, f"{impl}_{mode}"), conns, slice_s, args.warmup)
                if impl in ("paycell", "paytxn"):
                    rate_hint = max(rate_hint, rate)
                done[impl][0] += n
                done[impl][1] += errors
                done[impl][2].append(rate)
        for impl in impls:
            n, errors, rates = done[impl]
            results[mode, conns, impl] = r = (n / args.duration, n, errors)
            print(f"[{g}/{len(groups)}] {impl:<7} {mode:<4} {conns:>2} conns: {r[0]:8,.0f} postings/s "
                  f"({n:,} in {args.duration:g} s; slices {min(rates):,.0f}..{max(rates):,.0f}/s; "
                  f"{errors} deadlocks/serialization errors)", flush=True)

    await maker.close()
    print()
    print(f"{'scenario':<8} {'conns':>5} {'paycell/s':>10} {'paytxn/s':>9} {'plain/s':>10} {'paycell/plain':>14}"
          f" {'paytxn/plain':>13} {'model/s':>10} {'paycell/model':>14} {'model/plain':>12}")
    for conns in args.conns:
        for mode in ("cold", "hot"):
            p, t, m, q = (results[mode, conns, impl][0] for impl in ("paycell", "paytxn", "model", "plain"))
            print(f"{mode:<8} {conns:>5} {p:>10,.0f} {t:>9,.0f} {q:>10,.0f} {p / q:>13.2f}x {t / q:>12.2f}x"
                  f" {m:>10,.0f} {p / m:>13.2f}x {m / q:>11.2f}x")
    print()
    print(f"{'hot/cold':<8} {'conns':>5} {'paycell':>10} {'plain':>10} {'model':>10}")
    for conns in args.conns:
        ratios = [results["hot", conns, impl][0] / results["cold", conns, impl][0] for impl in ("paycell", "plain", "model")]
        print(f"{'':<8} {conns:>5} " + " ".join(f"{r:>9.2f}x" for r in ratios))

    conn = await connect(settings.app_database_url)
    try:
        t0 = time.perf_counter()
        report = await check(conn)
    finally:
        await conn.close()
    print()
    print(f"ledger check ({BENCH_DB}, {time.perf_counter() - t0:.1f} s): {report.transactions:,} transactions, "
          f"{report.entries:,} entries, {report.accounts:,} accounts: {'OK' if report.ok else 'BROKEN'}")
    for problem in report.problems:
        print(f"  - {problem}")
    admin = await asyncpg.connect(settings.admin_database_url)
    try:
        total = await admin.fetchval("SELECT sum(balance)::bigint FROM bench_balance")
        model_off = await admin.fetch("SELECT currency, sum(balance_minor) AS s FROM bench_account "
                                      "GROUP BY currency HAVING sum(balance_minor) <> 0")
    finally:
        await admin.close()
    expected = (args.wallets + 1) * WALLET_FUNDS_MINOR
    print(f"plain tables: balances sum to {total:,} ({'OK' if total == expected else f'expected {expected:,}'})")
    print(f"model tables: balances sum to zero per currency: {'OK' if not model_off else model_off}")
    print(f"\n{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, asyncpg {asyncpg.__version__}")
    return 0 if report.ok and total == expected and not model_off else 1


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per scenario (default 10)")
    parser.add_argument("--slices", type=int, default=5,
                        help="slices each scenario's time is cut into, interleaved across paycell/model/plain "
                             "(default 5)")
    parser.add_argument("--warmup", type=float, default=0.5,
                        help="seconds run before measuring each slice (default 0.5)")
    parser.add_argument("--conns", type=lambda s: [int(c) for c in s.split(",")], default=[8, 32],
                        help="comma-separated concurrent connection counts (default 8,32)")
    parser.add_argument("--wallets", type=int, default=100_000, help="funded wallets (default 100000)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
