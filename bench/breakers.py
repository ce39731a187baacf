"""What a connector's circuit breaker costs per payment: Redis round trips and time per call.

    .venv/bin/python bench/breakers.py                       # Redis from PAYCELL_REDIS_URL, db + 5
    .venv/bin/python bench/breakers.py --redis redis://127.0.0.1:6379/9 --calls 5000

Counts the commands each path of paycell.psp.breakers.Breakers sends to Redis (each one round trip:
purgatory pipelines nothing), by wrapping its client's execute_command, on a breaker of its own
(`bench_breaker`), and times each call (one client, one asyncio loop; Redis on localhost):
  closed call     a PSP call through a closed breaker (the payment path: one per charge step call)
  state read      `screen` reading a breaker (only when a route has several candidates)
  open call       a call refused by an open breaker (no PSP call at all)
  failing call    a technical failure counted (INCR) while the breaker stays closed
The database is not touched. The Redis db is flushed of its `paycell:breaker:bench*` keys only.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import time

import msgspec
import redis

from paycell.config import load
from paycell.psp.base import PspTransientError
from paycell.psp.breakers import KEY_PREFIX, BreakerOpen, Breakers

NAME = "bench_breaker"


class _Counted:
    """Counts the commands sent through one breakers' Redis client."""

    def __init__(self, breakers: Breakers) -> None:
        self.sent = 0
        client = breakers._uow.contexts.redis
        original = client.execute_command

        async def counted(*args, **kwargs):
            self.sent += 1
            return await original(*args, **kwargs)
        client.execute_command = counted


async def _ok() -> str:
    return "ok"


async def _fail() -> str:
    raise PspTransientError("bench: simulated timeout")


async def _measure(label: str, counter: _Counted, calls: int, fn) -> dict:
    before = counter.sent
    started = time.perf_counter()
    for _ in range(calls):
        await fn()
    elapsed_s = time.perf_counter() - started
    after = counter.sent
    row = {"path": label, "calls": calls, "redis_commands_per_call": round((after - before) / calls, 2),
           "us_per_call": round(elapsed_s / calls * 1e6, 1)}
    print(msgspec.json.encode(row).decode())
    return row


def _reset(client: redis.Redis) -> None:
    for key in client.scan_iter(f"{KEY_PREFIX}bench*"):
        client.delete(key)


async def main(redis_url: str, calls: int) -> None:
    settings = load({**os.environ, "PAYCELL_REDIS_URL": redis_url, "PAYCELL_PSP_BREAKER_FAILURES_MAX": str(calls * 10),
                     "PAYCELL_PSP_BREAKER_REOPEN_S": "3600"})
    client = redis.Redis.from_url(redis_url)
    _reset(client)
    breakers = Breakers(settings)
    counter = _Counted(breakers)
    try:
        await breakers.call(NAME, _ok)  # registers the breaker (one SET, once per connector ever)

        async def closed():
            await breakers.call(NAME, _ok)

        async def read():
            await breakers.state(NAME)

        async def failing():
            try:
                await breakers.call(NAME, _fail)
            except PspTransientError:
                pass

        await _measure("closed call", counter, calls, closed)
        await _measure("state read", counter, calls, read)
        await _measure("failing call", counter, calls, failing)
        before = counter.sent
        await breakers.call(NAME, _ok)  # a success after failures resets the count: one SET
        print(msgspec.json.encode({"path": "first success after failures",
                                   "redis_commands": counter.sent - before}).decode())
        opening = Breakers(load({**os.environ, "PAYCELL_REDIS_URL": redis_url,
                                 "PAYCELL_PSP_BREAKER_FAILURES_MAX": "1", "PAYCELL_PSP_BREAKER_REOPEN_S": "3600"}))
        opening_counter = _Counted(opening)
        try:
            await opening.call(NAME, _fail)
        except PspTransientError:
            pass
        print(msgspec.json.encode({"path": "opening call", "redis_commands": opening_counter.sent}).decode())

        async def refused():
            try:
                await opening.call(NAME, _ok)
            except BreakerOpen:
                pass

        await _measure("open call", opening_counter, calls, refused)
        await opening.close()
    finally:
        await breakers.close()
        _reset(client)
        client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = load().redis_url
    base, _, db = default.rpartition("/")
    parser.add_argument("--redis", default=f"{base}/{int(db) + 5 if db.isdigit() else 5}")
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(main(args.redis, args.calls))
