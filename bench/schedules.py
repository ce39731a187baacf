"""Scheduled payments: how fast the schedule clock turns due occurrences into payments.

    .venv/bin/python bench/schedules.py                         # 100,000 schedules, 2 clock processes
    .venv/bin/python bench/schedules.py --schedules 10000 --clocks 1   # a quick look

Every run starts from a fresh database `paycell_bench_schedules` (dropped, created, migrated), then
writes in bulk, outside the timed window, `--users` users with the test card attached and
`--schedules` daily pay-in schedules (10.00 USD from the card) all due one minute ago: 100,000
schedules at once is the issue's worst case (everyone's rent at 09:00, jitter off).

Timed: `--clocks` processes each run paycell.schedules.clock.run_due at the real clock until
nothing is due, exactly as `paycell scheduler` does on its ticks: claim a batch
(PAYCELL_SCHEDULE_CLAIM_BATCH_ROWS, FOR UPDATE SKIP LOCKED), plan each occurrence, create the
payments with payments.accept_many (the API's accept statement, pipelined), record the runs, move
the schedules on, commit, and enqueue `screen` for every new order on a real Redis (database
`--redis-db`, flushed before and after; no worker consumes it). The figure is occurrences executed
per second: schedules / wall time from the clocks' start to the last commit. The issue's target:
>= 170/s (100,000 within 10 minutes on a 2-core box).

Afterwards the bench checks what it measured: one payment, one order in `requested` and one
pending run per schedule, no schedule still due, one `screen` message per order in Redis.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import multiprocessing
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg  # noqa: E402
import msgspec  # noqa: E402
import redis  # noqa: E402

from paycell import logs  # noqa: E402
from paycell.config import load  # noqa: E402
from paycell.config.settings import database_name, with_database  # noqa: E402
from paycell.store.migrate import migrate  # noqa: E402

BENCH_DB = "paycell_bench_schedules"

_SCHEDULES = """
INSERT INTO payment_schedule (user_id, schedule_id, kind, payment_option, from_acct, to_acct, amount_minor, currency,
                              recurrence, time_zone, start_local, status, next_occurrence_at, next_run_at)
SELECT 'bu-' || (g % $2), gen_random_uuid(), 'payin', 'card', 'tok_card_ok', 'wallet:bu-' || (g % $2), 1000, 'USD',
       'FREQ=DAILY', 'UTC', $3::timestamp, 'active', $4, $4
  FROM generate_series(1, $1) g
"""


def bench_settings(redis_db: int):
    settings = load()
    base, _, _ = settings.redis_url.rpartition("/")
    overrides = {"admin_database_url": with_database(settings.admin_database_url, BENCH_DB),
                 "redis_url": f"{base}/{redis_db}", "schedule_jitter_s": 0, "log_level": "warning"}
    if settings.database_url:
        overrides["database_url"] = with_database(settings.database_url, BENCH_DB)
    return msgspec.structs.replace(settings, **overrides)


async def fresh_database(settings, users: int, schedules: int, due_at: datetime.datetime) -> None:
    admin = await asyncpg.connect(with_database(settings.admin_database_url, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database_name(settings.admin_database_url)}" WITH (FORCE)')
    finally:
        await admin.close()
    await migrate(settings)
    conn = await asyncpg.connect(settings.admin_database_url)
    try:
        await conn.execute("INSERT INTO app_user (user_id) SELECT 'bu-' || g FROM generate_series(0, $1 - 1) g", users)
        await conn.execute("""INSERT INTO instrument (user_id, instrument_id, connector, payment_option, provider_token)
                              SELECT 'bu-' || g, gen_random_uuid(), 'test', 'card', 'tok_card_ok'
                                FROM generate_series(0, $1 - 1) g""", users)
        await conn.execute(_SCHEDULES, schedules, users, due_at.replace(tzinfo=None), due_at)
        # Statistics for the tables set up here only: an ANALYZE of the still empty payment tables
        # would record them as empty, and with autovacuum off (as on the bench machine) every
        # foreign-key check of the runs would then keep its seq-scan plan while they fill up.
        await conn.execute("ANALYZE app_user, instrument, payment_schedule")
    finally:
        await conn.close()


def clock_process(settings, results) -> None:
    from paycell.actors.broker import build_broker, send
    from paycell.schedules import clock
    from paycell.store.db import create_pool

    logs.configure("warning")

    async def run() -> tuple[int, int]:
        pool = await create_pool(settings, size_max=2)
        broker = build_broker(settings)

        async def enqueue(step: str, *ids: str) -> None:
            send(broker, step, *ids)

        created = batches = 0
        try:
            while True:
                now = datetime.datetime.now(datetime.timezone.utc)
                result = await clock.run_due(pool, settings, now=now, enqueue=enqueue, batches_max=1_000_000)
                created, batches = created + result.created, batches + result.batches
                # An empty claim may only mean the other clocks hold the rest (SKIP LOCKED): stop
                # once nothing is due at all, as a scheduler's next tick would find.
                if result.batches == 0 and not await pool.fetchval(
                        "SELECT count(*) FROM payment_schedule WHERE status = 'active' AND next_run_at <= $1", now):
                    return created, batches
        finally:
            broker.close()
            await pool.close()

    results.put((os.getpid(), *asyncio.run(run()), time.monotonic()))


async def verify(settings, schedules: int) -> list[str]:
    conn = await asyncpg.connect(settings.admin_database_url)
    try:
        found = {
            "payments": await conn.fetchval("SELECT count(*) FROM payment_request WHERE scheduled_payment_id IS NOT NULL"),
            "orders in requested": await conn.fetchval(
                "SELECT count(*) FROM payment_order WHERE payment_order_status = 'requested'"),
            "pending runs": await conn.fetchval("SELECT count(*) FROM schedule_run WHERE outcome = 'pending'"),
            "schedules run": await conn.fetchval(
                "SELECT count(*) FROM payment_schedule WHERE last_occurrence_at IS NOT NULL AND next_run_at > now()"),
        }
    finally:
        await conn.close()
    messages = redis.Redis.from_url(settings.redis_url).llen("dramatiq:payments")
    found["screen messages"] = messages
    return [f"{name}: {value} (expected {schedules})" for name, value in found.items() if value != schedules]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schedules", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--clocks", type=int, default=2, help="scheduler processes")
    parser.add_argument("--batch-rows", type=int, default=None, help="default PAYCELL_SCHEDULE_CLAIM_BATCH_ROWS")
    parser.add_argument("--redis-db", type=int, default=47)
    args = parser.parse_args()
    settings = bench_settings(args.redis_db)
    if args.batch_rows:
        settings = msgspec.structs.replace(settings, schedule_claim_batch_rows=args.batch_rows)
    logs.configure("warning")
    due_at = datetime.datetime.now(datetime.timezone.utc).replace(second=0, microsecond=0) - datetime.timedelta(minutes=1)
    started = time.monotonic()
    asyncio.run(fresh_database(settings, args.users, args.schedules, due_at))
    redis.Redis.from_url(settings.redis_url).flushdb()
    print(f"setup: {args.schedules} schedules of {args.users} users due at {due_at:%H:%M} UTC "
          f"({time.monotonic() - started:.1f} s, not timed)")
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    procs = [context.Process(target=clock_process, args=(settings, results)) for _ in range(args.clocks)]
    started = time.monotonic()
    for p in procs:
        p.start()
    done = [results.get() for _ in procs]
    for p in procs:
        p.join()
    elapsed_s = max(d[3] for d in done) - started
    created = sum(d[1] for d in done)
    print(f"clocks: {args.clocks} processes, batches of {settings.schedule_claim_batch_rows}: "
          + ", ".join(f"{d[1]} payments in {d[2]} batches" for d in done))
    print(f"{created} occurrences executed in {elapsed_s:.1f} s: {created / elapsed_s:.0f} occurrences/s "
          f"(target >= 170/s); {os.cpu_count()} CPUs, Python {platform.python_version()}")
    problems = asyncio.run(verify(settings, args.schedules))
    redis.Redis.from_url(settings.redis_url).flushdb()
    if problems or created != args.schedules:
        print("CHECK FAILED:\n  " + "\n  ".join(problems or [f"created {created}"]))
        sys.exit(1)
    print("check: one payment, one requested order, one pending run and one screen message per schedule")


if __name__ == "__main__":
    main()
