"""The Procfile's `scheduler`: a loop that, every PAYCELL_SCHEDULER_TICK_S, enqueues the maintenance
jobs whose slot has come (periodic.py), runs the scheduled payments that are due (clock.py) and
lets past runs learn their outcome (outcomes.py). Every part claims its work in Postgres with
FOR UPDATE SKIP LOCKED, so any number of these processes may run side by side: replicas share the
work, none is a leader. A tick that fails (Postgres or Redis away) is logged and the next one
tries again; nothing a tick did is lost (it commits before it enqueues)."""
from __future__ import annotations

import asyncio
import contextlib
import datetime
import signal

import structlog

from paycell.actors.broker import build_broker, send
from paycell.config import Settings
from paycell.schedules import clock, outcomes, periodic
from paycell.store.db import create_pool

log = structlog.get_logger("paycell.scheduler")


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


async def tick(pool, settings: Settings, enqueue, *, now: datetime.datetime) -> clock.TickResult:
    """One tick at `now`: jobs, due schedules, outcomes."""
    await periodic.run_due_jobs(pool, now=now, enqueue=enqueue)
    result = await clock.run_due(pool, settings, now=now, enqueue=enqueue)
    await outcomes.learn(pool, settings, now=now)
    return result


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Tick until `stop` is set."""
    pool = await create_pool(settings)
    broker = build_broker(settings)

    async def enqueue(step: str, *ids: str) -> None:
        send(broker, step, *ids)

    try:
        await periodic.register(pool, now=utc_now())
        log.info("scheduler.started", tick_s=settings.scheduler_tick_s, jobs=list(periodic.JOBS))
        while not stop.is_set():
            try:
                await tick(pool, settings, enqueue, now=utc_now())
            except Exception:
                log.error("scheduler.tick_failed", exc_info=True)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.scheduler_tick_s)
    finally:
        broker.close()
        await pool.close()
        log.info("scheduler.stopped")


def main(settings: Settings) -> None:
    """Run the scheduler until SIGINT or SIGTERM."""
    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop)

    asyncio.run(run())
