"""The maintenance jobs' clock: one run per cron slot whatever the number of scheduler processes,
one run (not one per missed slot) after downtime, and the real jobs registered."""
from __future__ import annotations

import asyncio
import datetime
import random
import string

from paycell.schedules import periodic
from paycell.store.db import create_pool
from tests.schedules.conftest import EPOCH, Sent

MINUTE = datetime.timedelta(minutes=1)


def job_name() -> str:
    return "test_job_" + "".join(random.choices(string.ascii_lowercase, k=12))


async def test_three_schedulers_enqueue_each_slot_of_a_job_once(pool, migrated):
    jobs = {job_name(): "* * * * *", job_name(): "*/5 * * * *"}
    await periodic.register(pool, now=EPOCH, jobs=jobs)
    pools = [await create_pool(migrated, size_max=1) for _ in range(3)]
    sent = [Sent() for _ in range(3)]
    try:
        for minute in range(1, 11):
            now = EPOCH + minute * MINUTE
            await asyncio.gather(*(periodic.run_due_jobs(p, now=now, enqueue=s, jobs=jobs)
                                   for p, s in zip(pools, sent)))
            # A tick that fires twice changes nothing.
            await periodic.run_due_jobs(pools[0], now=now, enqueue=sent[0], jobs=jobs)
    finally:
        for p in pools:
            await p.close()
    every_minute, every_five = list(jobs)
    enqueued = [m[0] for s in sent for m in s.messages]
    assert enqueued.count(every_minute) == 10
    assert enqueued.count(every_five) == 2


async def test_after_downtime_an_overdue_job_runs_once_and_then_keeps_its_slots(pool):
    jobs = {job_name(): "*/10 * * * *"}
    await periodic.register(pool, now=EPOCH, jobs=jobs)
    sent = Sent()
    assert await periodic.run_due_jobs(pool, now=EPOCH + 95 * MINUTE, enqueue=sent, jobs=jobs) == list(jobs)
    assert await periodic.run_due_jobs(pool, now=EPOCH + 99 * MINUTE, enqueue=sent, jobs=jobs) == []
    assert await periodic.run_due_jobs(pool, now=EPOCH + 100 * MINUTE, enqueue=sent, jobs=jobs) == list(jobs)
    row = await pool.fetchrow("SELECT next_run_at, last_run_at FROM periodic_job WHERE name = $1", list(jobs)[0])
    assert (row["last_run_at"], row["next_run_at"]) == (EPOCH + 100 * MINUTE, EPOCH + 110 * MINUTE)


async def test_a_lost_enqueue_loses_one_slot_and_the_next_slot_runs(pool):
    jobs = {job_name(): "* * * * *"}
    await periodic.register(pool, now=EPOCH, jobs=jobs)
    assert await periodic.run_due_jobs(pool, now=EPOCH + MINUTE, enqueue=Sent(fail=True), jobs=jobs) == list(jobs)
    sent = Sent()
    await periodic.run_due_jobs(pool, now=EPOCH + MINUTE, enqueue=sent, jobs=jobs)
    assert sent.messages == []
    await periodic.run_due_jobs(pool, now=EPOCH + 2 * MINUTE, enqueue=sent, jobs=jobs)
    assert sent.messages == [(list(jobs)[0],)]


def test_the_maintenance_actors_are_the_jobs_and_each_has_a_queue():
    from paycell.actors.broker import STEP_QUEUES

    assert set(periodic.JOBS) == {"sweep", "expire_reviews", "expire_idempotency_keys", "train_model",
                                  "reconcile_internal", "reconcile_nightly"}
    assert set(periodic.JOBS) <= set(STEP_QUEUES)
    assert periodic.next_slot("17 3 * * 1", EPOCH) == datetime.datetime(2031, 1, 13, 3, 17, tzinfo=datetime.timezone.utc)
