"""What the router adds to `screen`'s statement per payment: the psp_attempt row written in the
statement that moves the order to psp_submitting (migration 0011), timed against the same move
without it.

    PYTHONPATH=. PAYCELL_ADMIN_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/scratch \
        .venv/bin/python bench/route_move.py --orders 2000   # a scratch database: created and migrated

Each round makes `--orders` pay-in orders in `requested` (as the API does), then moves each in its
own transaction (lock + move + commit, as `screen` does) alternately with and without the
attempt row, one connection, and prints the mean time per move of each kind. The orders are
left in psp_submitting (a test database's sweeper will re-drive them; use a scratch database).
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from paycell.config import load
from paycell.store import payments
from paycell.store.db import create_pool
from paycell.store.migrate import migrate
from tests.helpers import new_order, new_user


async def main(orders: int) -> None:
    settings = load()
    await migrate(settings)
    pool = await create_pool(settings, size_max=2)
    try:
        async with pool.acquire() as conn:
            user = new_user("bench-route")
            async with conn.transaction():
                ids = [await new_order(conn, user, "payin", 1_00) for _ in range(orders)]
            times: dict[bool, list[float]] = {True: [], False: []}
            for i, order_id in enumerate(ids):
                with_attempt = i % 2 == 0
                started = time.perf_counter()
                async with conn.transaction():
                    order = await payments.lock_order(conn, user, order_id)
                    await payments.move(conn, order, "psp_submitting", event="order.psp_submitting",
                                        data={"psp": "test", "attempt": 1}, psp="test", attempt=1,
                                        psp_candidates=["test"], psp_attempt_no=1, psp_attempt_from=1,
                                        lease_until=payments.lease(30),
                                        psp_attempt=(1, "test", "routed") if with_attempt else None)
                times[with_attempt].append(time.perf_counter() - started)
        for flag, label in ((False, "move"), (True, "move + psp_attempt row")):
            print(f"{label:24s} mean {statistics.mean(times[flag]) * 1e6:8.1f} us  "
                  f"median {statistics.median(times[flag]) * 1e6:8.1f} us  (n={len(times[flag])})")
    finally:
        await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000)
    asyncio.run(main(parser.parse_args().orders))
