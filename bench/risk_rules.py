"""What knowing the rules in force costs a worker per payment (paycell.rules.in_force.RulesInForce).

    PAYCELL_ADMIN_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/paycell_bench_rules \\
        .venv/bin/python bench/risk_rules.py [--hits 200000] [--checks 2000] [--reloads 200] [--list-values 10000]

The database is created and migrated if needed, then given a list `bench_ips` holding
`--list-values` IPs and a rule set naming it (the default file plus one rule). One connection,
one asyncio loop, Postgres on localhost. Times per `get()`:
  hit            within PAYCELL_RISK_RELOAD_S of the last check: no I/O (the common case)
  check          the interval passed, nothing changed: one read of the counter row
  reload/lists   the counter moved because a list changed: the rule set and every list read in
                 one statement, the rule set not compiled again
  reload/rules   a new rule set was activated: the same read, plus compiling it
The changes that make the counter move are made between timed calls, not timed.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

from paycell.config import load
from paycell.rules import changes
from paycell.rules.check import compile_rules, default_rules_text
from paycell.rules.in_force import RulesInForce
from paycell.store.db import connect
from paycell.store.migrate import migrate

LIST = "bench_ips"


def _rules(tag: str) -> str:
    return (default_rules_text() + f"\n# bench {tag}\n"
            f'block "bench list" when ip in list:{LIST} on payin tags bench\n')


async def _setup(conn, values: int) -> None:
    async with conn.transaction():
        await changes.create_list(conn, LIST, "ip", by="bench")
        have = await conn.fetchval("SELECT count(*) FROM risk_list_entry WHERE list_name = $1 AND removed_at IS NULL",
                                   LIST)
        wanted = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(values)]
        for start in range(have, values, 500):
            await changes.add_values(conn, LIST, wanted[start:start + 500], note="", by="bench")
        await changes.push(conn, _rules(uuid.uuid4().hex), note="bench", activate=True, by="bench")


def _us(samples: list[float]) -> str:
    samples = sorted(samples)
    return (f"median {statistics.median(samples) * 1e6:9.1f} us   p90 {samples[int(len(samples) * 0.9)] * 1e6:9.1f} us"
            f"   n={len(samples)}")


async def main(args) -> None:
    settings = load()
    await migrate(settings)
    conn = await connect(settings.app_database_url)
    try:
        await _setup(conn, args.list_values)
        cache = RulesInForce(3600)
        in_force = await cache.get(conn)
        print(f"in force: version {in_force.version}, {len(in_force.rule_set.rules)} rules, "
              f"{sum(map(len, in_force.lists.values()))} list values in {len(in_force.lists)} lists")

        started = time.perf_counter()
        for _ in range(args.hits):
            await cache.get(conn)
        hit_s = (time.perf_counter() - started) / args.hits
        print(f"hit           mean   {hit_s * 1e6:9.3f} us   n={args.hits} (no I/O)")

        checking = RulesInForce(0)
        await checking.get(conn)
        samples = []
        for _ in range(args.checks):
            t = time.perf_counter()
            await checking.get(conn)
            samples.append(time.perf_counter() - t)
        assert checking.reloads == 1
        print(f"check         {_us(samples)}")

        samples = []
        for i in range(args.reloads):
            async with conn.transaction():  # the change: not timed
                if i % 2:
                    await changes.remove_value(conn, LIST, "192.0.2.1", by="bench")
                else:
                    await changes.add_values(conn, LIST, ["192.0.2.1"], note="", by="bench")
            t = time.perf_counter()
            await checking.get(conn)
            samples.append(time.perf_counter() - t)
        print(f"reload/lists  {_us(samples)}")

        samples = []
        for _ in range(args.reloads):
            async with conn.transaction():
                await changes.push(conn, _rules(uuid.uuid4().hex), note="bench", activate=True, by="bench")
            t = time.perf_counter()
            await checking.get(conn)
            samples.append(time.perf_counter() - t)
        print(f"reload/rules  {_us(samples)}")

        source = _rules("x")
        samples = []
        for _ in range(args.reloads):
            t = time.perf_counter()
            compile_rules(source)
            samples.append(time.perf_counter() - t)
        print(f"(compile alone {_us(samples)})")
    finally:
        await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hits", type=int, default=200_000)
    parser.add_argument("--checks", type=int, default=2_000)
    parser.add_argument("--reloads", type=int, default=200)
    parser.add_argument("--list-values", type=int, default=10_000)
    asyncio.run(main(parser.parse_args()))
