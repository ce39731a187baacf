"""What a schedule's occurrence is made of: its recurrence, its jitter, its payment's id, and how a
failed run counts. Pure functions: the clock (clock.py) and the API (manage.py) share them."""
from __future__ import annotations

import datetime
import hashlib
import uuid

from paycell.schedules import recurrence
from paycell.store.schedules import Schedule

# The namespace of occurrence payment ids: uuid5(namespace, "<schedule id> <occurrence instant>").
PAYMENT_ID_NAMESPACE = uuid.UUID("6c1d8a53-3f0e-5d7b-9a41-0e2f9c7b5a10")
FAILED, SUCCEEDED = "failed", "succeeded"
# The outcomes of a run once its payment is no longer processing (payment_request.status).
OUTCOMES = frozenset({"succeeded", "failed", "returned", "needs_attention"})


def recurrence_of(s: Schedule) -> recurrence.Recurrence:
    """The schedule's recurrence (its stored rule was accepted by recurrence.parse before)."""
    rule, _ = recurrence.parse(s.recurrence)
    return recurrence.Recurrence(rule, recurrence.zone(s.time_zone), s.start_local,
                                 recurrence.End(count=s.end_count, until_local=s.end_until_local))


def payment_id(schedule_id: str, occurrence_at: datetime.datetime) -> str:
    """The payment id, and so the idempotency key, of an occurrence: one payment per occurrence."""
    instant = occurrence_at.astimezone(datetime.timezone.utc).isoformat()
    return str(uuid.uuid5(PAYMENT_ID_NAMESPACE, f"{schedule_id} {instant}"))


def jitter(schedule_id: str, occurrence_at: datetime.datetime, window_s: int) -> datetime.timedelta:
    """How long after its occurrence a run starts: 0 to `window_s`, the same for the same occurrence
    in every process (a hash, not a random draw), spread evenly over many schedules."""
    if window_s <= 0:
        return datetime.timedelta(0)
    digest = hashlib.sha256(f"{schedule_id} {occurrence_at.timestamp():.6f}".encode()).digest()
    return datetime.timedelta(milliseconds=int.from_bytes(digest[:8], "big") % (window_s * 1_000))


def run_at(schedule_id: str, occurrence_at: datetime.datetime | None, window_s: int) -> datetime.datetime | None:
    return None if occurrence_at is None else occurrence_at + jitter(schedule_id, occurrence_at, window_s)


def failures_after(failures: int, outcome: str) -> int:
    """Consecutive failures after a run's outcome: a success starts again from 0; a return or a
    payment needing an operator says nothing about the next run and leaves the count."""
    if outcome == SUCCEEDED:
        return 0
    return failures + 1 if outcome == FAILED else failures
