"""A run learns its outcome from its payment, on the scheduler's ticks: pending runs due for a look
are claimed (SKIP LOCKED) with their payment's status. A payment no longer processing gives the run
its outcome and counts on the schedule (consecutive failures; PAYCELL_SCHEDULE_FAILURES_MAX in a row
pause it with reason `failures_max`); one still processing is looked at again after twice its age,
at most PAYCELL_SCHEDULE_OUTCOME_RECHECK_S_MAX later, so a burst of runs costs few looks.

Chosen over a hook in the payment steps: the steps stay unaware of schedules, and a crash anywhere
loses nothing (the run stays pending until a tick sees its payment's status). A run counts only
when its occurrence is not older than the last counted one: two runs resolved out of order cannot
reset a count the later one set.
"""
from __future__ import annotations

import datetime

import structlog

from paycell.config import Settings
from paycell.schedules import occurrences
from paycell.store import schedules

log = structlog.get_logger("paycell.schedules")
OUTCOME_BATCH_ROWS = 1_000


def _next_look(now: datetime.datetime, occurrence_at: datetime.datetime, recheck_s_max: int) -> datetime.datetime:
    age_s = max((now - occurrence_at).total_seconds(), 0.5)
    return now + datetime.timedelta(seconds=min(2 * age_s, recheck_s_max))


async def learn(pool, settings: Settings, *, now: datetime.datetime, limit: int = OUTCOME_BATCH_ROWS) -> int:
    """Resolve the pending runs whose payments have an outcome; returns how many were resolved."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await schedules.claim_pending_runs(conn, now=now, limit=limit)
        done = [r for r in rows if r["payment_status"] in occurrences.OUTCOMES]
        waiting = [(r["user_id"], r["schedule_id"], r["occurrence_at"],
                    _next_look(now, r["occurrence_at"], settings.schedule_outcome_recheck_s_max))
                   for r in rows if r["payment_status"] not in occurrences.OUTCOMES]
        if waiting:
            await schedules.look_again(conn, waiting)
        if not done:
            return 0
        await schedules.resolve_runs(conn, [(r["user_id"], r["schedule_id"], r["occurrence_at"], r["payment_status"],
                                             r["failure_code"] if r["payment_status"] != "succeeded" else None)
                                            for r in done])
        by_schedule: dict[tuple[str, str], list] = {}
        for r in sorted(done, key=lambda r: r["occurrence_at"]):
            by_schedule.setdefault((r["user_id"], r["schedule_id"]), []).append(r)
        for s in await schedules.lock_many(conn, sorted(by_schedule)):
            failures, last = s.consecutive_failures, s.last_resolved_at
            for r in by_schedule[(s.user_id, s.schedule_id)]:
                if last is None or r["occurrence_at"] >= last:
                    failures, last = occurrences.failures_after(failures, r["payment_status"]), r["occurrence_at"]
            fields = {"consecutive_failures": failures, "last_resolved_at": last}
            if s.status == "active" and failures >= settings.schedule_failures_max:
                fields.update(status="paused", paused_reason="failures_max")
                log.info("schedule.paused", user_id=s.user_id, schedule_id=s.schedule_id, reason="failures_max",
                         failures=failures)
            await schedules.update(conn, s.user_id, s.schedule_id, **fields)
    return len(done)
