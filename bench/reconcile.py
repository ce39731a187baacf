"""Settlement reconciliation throughput: lines reconciled per second for a Stripe itemized balance
change report of 1,000,000 lines (target: under 5 minutes on this box), and the peak RSS of the
reconciling process.

    .venv/bin/python bench/reconcile.py                   # 1,000,000 lines
    .venv/bin/python bench/reconcile.py --lines 100000    # a quick look

Setup, outside the timed window and once per --lines: the database `paycell_bench_recon_seed_<n>`
is migrated and holds n completed Stripe pay-ins (n payment requests and orders written in bulk
with set-based SQL as the app role, moved along the state table: requested -> psp_submitting ->
completed; their settlements are not posted, so the fee statement runs its per-line checks but
finds nothing to post: its cost is measured, its one posting per currency is not). Each run copies
that database to `paycell_bench_recon` (CREATE DATABASE ... TEMPLATE), so every run ingests into the
same state, and writes the report file: one `charge` line per order, with 0.1% amount mismatches,
0.1% lines for unknown payments and 0.05% duplicates, so that ~2,500 breaks are classified and
queued (a review item each) inside the timed window.

Timed: paycell.reconcile.settlement.reconcile_file, everything the nightly actor does after the
download: hash, parse (csv module, row by row), COPY into the staging table, the classifying
statement into recon_line, the breaks, the fee statement, the fixes and the review items, the
run report. Peak RSS is this process's (ru_maxrss), which is the reconciler's; Postgres's memory
is its own (work_mem and shared buffers, bounded by its configuration).
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import datetime
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg  # noqa: E402
import msgspec  # noqa: E402

from paycell import logs  # noqa: E402
from paycell.actors.broker import build_broker  # noqa: E402
from paycell.actors.context import Context  # noqa: E402
from paycell.config import load  # noqa: E402
from paycell.config.settings import with_database  # noqa: E402
from paycell.psp.stripe import report as stripe_report  # noqa: E402
from paycell.reconcile import settlement  # noqa: E402
from paycell.store.db import create_pool  # noqa: E402
from paycell.store.migrate import migrate  # noqa: E402

BENCH_DB = "paycell_bench_recon"
SEED = """
WITH src AS (
    SELECT i, md5('bench-req-' || i)::uuid AS payment_id, md5('bench-ord-' || i)::uuid AS order_id,
           'bench-' || (i % 50000) AS payer, 100 + (i::bigint * 7919) % 100000 AS amount_minor
      FROM generate_series($1::int, $2::int) AS i
), req AS (
    INSERT INTO payment_request (payment_id, user_id, payment_option, kind, from_acct, to_acct, amount_minor, currency)
    SELECT payment_id, payer, 'card', 'payin', 'tok_card_ok', 'wallet:' || payer, amount_minor, 'USD' FROM src
)
INSERT INTO payment_order (payment_order_id, payment_id, user_id, kind, payment_option, from_acct, to_acct,
                           amount_minor, currency, payment_order_status, lease_until, deadline_at)
SELECT order_id, payment_id, payer, 'payin', 'card', 'tok_card_ok', 'wallet:' || payer, amount_minor, 'USD',
       'requested', now() + interval '1 day', now() + interval '1 day'
  FROM src"""
MOVE = """UPDATE payment_order SET payment_order_status = $3, psp = 'stripe', attempt = 1,
                 psp_reference = 'pi_' || substr(md5(payment_order_id::text), 1, 24)
           WHERE payment_order_id IN (SELECT md5('bench-ord-' || i)::uuid FROM generate_series($1::int, $2::int) i)"""
BATCH = 100_000


def settings_for(database: str):
    settings = load()
    overrides = {"admin_database_url": with_database(settings.admin_database_url, database)}
    if settings.database_url:
        overrides["database_url"] = with_database(settings.database_url, database)
    return msgspec.structs.replace(settings, **overrides)


async def seed(n: int) -> str:
    """The template database holding n completed Stripe pay-ins (made once)."""
    name = f"{BENCH_DB}_seed_{n}"
    settings = settings_for(name)
    await migrate(settings)
    conn = await asyncpg.connect(settings.app_database_url)
    try:
        have = await conn.fetchval("SELECT count(*) FROM payment_order WHERE psp = 'stripe'")
        if have < n:
            print(f"seeding {n} orders into {name} ...", flush=True)
            for lo in range(have + 1, n + 1, BATCH):
                hi = min(lo + BATCH - 1, n)
                async with conn.transaction():
                    await conn.execute(SEED, lo, hi)
                    await conn.execute(MOVE, lo, hi, "psp_submitting")
                    await conn.execute(MOVE, lo, hi, "completed")
            await conn.execute("VACUUM ANALYZE payment_order")
            await conn.execute("VACUUM ANALYZE payment_request")
    finally:
        await conn.close()
    return name


async def fresh_copy(template: str) -> None:
    settings = settings_for("postgres")
    conn = await asyncpg.connect(settings.admin_database_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{BENCH_DB}" TEMPLATE "{template}"')
    finally:
        await conn.close()


def write_report(path: Path, n: int, day: datetime.date) -> int:
    """The Stripe report of the n seeded orders, with its breaks; returns its line count."""
    import hashlib
    created = f"{day.isoformat()} 12:00:00"
    lines = 0
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(stripe_report.COLUMNS)
        for i in range(1, n + 1):
            order_id = hashlib.md5(f"bench-ord-{i}".encode()).hexdigest()
            order_id = f"{order_id[:8]}-{order_id[8:12]}-{order_id[12:16]}-{order_id[16:20]}-{order_id[20:]}"
            amount = 100 + (i * 7919) % 100000
            if i % 1000 == 0:
                amount += 1  # amount_mismatch
            if i % 1000 == 1:
                order_id = f"00000000-0000-4000-8000-{i:012d}"  # missing_ours
            fee = stripe_report.fee_minor("card", amount)
            row = (f"txn_{i:024d}", created, created, "usd", f"{amount // 100}.{amount % 100:02d}",
                   f"{fee // 100}.{fee % 100:02d}", f"{(amount - fee) // 100}.{(amount - fee) % 100:02d}", "charge",
                   "bench", f"ch_{i:024d}", f"pi_{i:024d}", order_id)
            w.writerow(row)
            lines += 1
            if i % 2000 == 7:
                w.writerow(row)  # duplicate
                lines += 1
    return lines


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    args = parser.parse_args()
    base = load()
    logs.configure("warning")
    template = await seed(args.lines)
    await fresh_copy(template)
    settings = settings_for(BENCH_DB)
    day = datetime.datetime.now(datetime.timezone.utc).date()
    with tempfile.TemporaryDirectory(prefix="paycell-bench-recon-") as directory:
        path = Path(directory) / "stripe.csv"
        lines = write_report(path, args.lines, day)
        size_mb = path.stat().st_size / 1e6
        pool = await create_pool(settings, size_max=4)
        ctx = Context(settings, pool, build_broker(base))
        rss_before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        started = time.perf_counter()
        done = await settlement.reconcile_file(ctx, "stripe", path)
        elapsed_s = time.perf_counter() - started
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        await ctx.close()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"file: {lines} lines, {size_mb:.0f} MB")
    print(f"reconciled in {elapsed_s:.1f} s: {lines / elapsed_s:,.0f} lines/s")
    print(f"report: lines {done.run.lines}, counts {done.run.counts}, auto-fixed {done.run.auto_fixed}, "
          f"queued {done.run.queued}, matched {done.run.totals['USD']['matched']}")
    print(f"peak RSS of the reconciling process: {rss_mb:.0f} MB (before the run: {rss_before_mb:.0f} MB)")


if __name__ == "__main__":
    asyncio.run(main())
