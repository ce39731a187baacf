"""The maintenance actors' clock, safe with any number of `paycell scheduler` processes (it
replaces periodiq, whose clock had to run exactly once).

Each job has a cron slot in Postgres (periodic_job). On every tick a process claims the jobs whose
slot has come (FOR UPDATE SKIP LOCKED: another process passes over them), moves each to its next
slot after now (croniter), commits, then enqueues the job's actor: one run per slot whatever the
number of processes, and a process that comes back after downtime runs an overdue job once, not
once per missed slot.

A crash between the commit and the enqueue loses that slot's run: the next slot runs the job.
Every job here works off the state it finds (orders past their lease, keys past their retention,
reviews past their expiry, the training window), so a lost run only delays its work by one period.
"""
from __future__ import annotations

import datetime

import structlog
from croniter import croniter

from paycell.checkout import Enqueue
from paycell.reconcile.schedule import CRONS as RECONCILE_CRONS
from paycell.store import schedules

log = structlog.get_logger("paycell.scheduler")

# actor name -> cron (UTC)
JOBS = {
    "sweep": "* * * * *",                    # the re-drive sweeper (paycell/sweeper.py)
    "expire_reviews": "* * * * *",           # the review queue's expiry (paycell/reviews.py)
    "expire_idempotency_keys": "23 * * * *",  # retention (paycell/retention.py)
    "train_model": "17 3 * * 1",             # the fraud model, weekly (paycell/risk/retrain.py)
    **RECONCILE_CRONS,                       # hourly internal, nightly settlement (paycell/reconcile)
}


def next_slot(cron: str, after: datetime.datetime) -> datetime.datetime:
    """The first slot of `cron` strictly after `after` (UTC)."""
    return croniter(cron, after.astimezone(datetime.timezone.utc)).get_next(datetime.datetime)


async def register(pool, *, now: datetime.datetime, jobs: dict[str, str] = JOBS) -> None:
    """Make sure every job has a slot (a job whose cron changed starts from its new next slot)."""
    async with pool.acquire() as conn:
        await schedules.ensure_jobs(conn, [(name, cron, next_slot(cron, now)) for name, cron in jobs.items()])


async def run_due_jobs(pool, *, now: datetime.datetime, enqueue: Enqueue, jobs: dict[str, str] = JOBS) -> list[str]:
    """Claim the jobs whose slot has come, move them to their next slot, commit, then enqueue them;
    returns the names enqueued."""
    async with pool.acquire() as conn, conn.transaction():
        due = await schedules.claim_due_jobs(conn, now=now, names=list(jobs))
        for row in due:
            await schedules.job_ran(conn, row["name"], ran_at=now, next_run_at=next_slot(row["cron"], now))
    names = [row["name"] for row in due]
    for name in names:
        try:
            await enqueue(name)
        except Exception:  # this slot is lost; the next one runs the job (see the module's docstring)
            log.warning("periodic.enqueue_failed", job=name, exc_info=True)
    if names:
        log.info("periodic.enqueued", jobs=names)
    return names
