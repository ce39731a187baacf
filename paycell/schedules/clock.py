"""The schedule clock: safe to run in as many processes, as often, as you like.

A batch is one transaction: claim up to PAYCELL_SCHEDULE_CLAIM_BATCH_ROWS active schedules whose
run time has come (FOR UPDATE SKIP LOCKED: another clock passes over them), create each one's
payment exactly as POST /payments/payment/v1 would (payments.accept_many: the gate, the idempotency
key, the request, its order in `requested`, `payment.requested`), with the payment id, hence the
idempotency key, derived from (schedule id, occurrence instant), record the runs and move each
schedule to its next occurrence; commit; then enqueue `screen` for the new orders.

- Two clocks never make two payments for one occurrence: the second cannot claim a locked schedule,
  and once the first commits the schedule has moved past the occurrence. Were it ever run again,
  the occurrence's payment id is taken: accept claims nothing.
- A crash before the commit leaves nothing: the schedule is still due and the next tick runs it.
- A crash between the commit and the enqueue loses only messages: the order waits in `requested`
  and the re-drive sweeper (paycell/sweeper.py) sends it to `screen` once its lease (PAYCELL_PSP_
  LEASE_S) has run out.

Catch-up after downtime: of the occurrences that came while no clock ran, only the latest is run;
the earlier ones are recorded as `skipped` runs (no payment). A payment that was due days ago is
rarely still wanted several times over; the user sees every skipped occurrence in the last runs.
"""
from __future__ import annotations

import datetime
import uuid

import msgspec
import structlog

from paycell import checkout
from paycell.checkout import Enqueue
from paycell.config import Settings
from paycell.schedules import occurrences
from paycell.store import payments, schedules
from paycell.store.schedules import Advance, Run, Schedule

log = structlog.get_logger("paycell.schedules")
REFUSED_CODES = {"transfer": "recipient_unknown", "payin": "instrument_not_attached",
                 "payout": "instrument_not_attached"}


class TickResult(msgspec.Struct):
    created: int = 0   # payments made
    skipped: int = 0   # occurrences missed during downtime, recorded as skipped
    refused: int = 0   # runs whose counterparty the gate refused (failed, no payment)
    ended: int = 0     # schedules that ran their last occurrence
    paused: int = 0    # schedules paused by their failures
    batches: int = 0


class _Plan(msgspec.Struct):
    schedule: Schedule
    occurrence_at: datetime.datetime
    skipped: list[datetime.datetime]
    next_occurrence_at: datetime.datetime | None
    acceptance: payments.Acceptance


def plan(s: Schedule, now: datetime.datetime, settings: Settings) -> _Plan:
    """What running a due schedule at `now` does: the occurrence to run (the latest that came), the
    ones to skip, the next one, and the payment."""
    due, following = occurrences.recurrence_of(s).until(after=s.next_occurrence_at, upto=now)
    came = [s.next_occurrence_at, *due]
    occurrence_at = came[-1]
    new = payments.NewPayment(
        payment_id=occurrences.payment_id(s.schedule_id, occurrence_at), payment_order_id=str(uuid.uuid4()),
        user_id=s.user_id, kind=s.kind, payment_option=s.payment_option, from_acct=s.from_acct, to_acct=s.to_acct,
        amount_minor=s.amount_minor, currency=s.currency, created_at=datetime.datetime.now(datetime.timezone.utc),
        scheduled_payment_id=s.schedule_id)
    return _Plan(s, occurrence_at, came[:-1], following, checkout.scheduled(new, settings))


async def run_batch(conn, settings: Settings, *, now: datetime.datetime,
                    limit: int) -> tuple[TickResult, list[tuple[str, str]]]:
    """One batch in the caller's transaction: (what it did, the new orders to send to `screen`, by
    their keys (user id, order id))."""
    result = TickResult(batches=1)
    claimed = await schedules.claim_due(conn, now=now, limit=limit)
    if not claimed:
        return TickResult(), []
    plans = [plan(s, now, settings) for s in claimed]
    accepted = await payments.accept_many(conn, [p.acceptance for p in plans], response_status=202,
                                          lease_s=settings.psp_lease_s, deadline_s=settings.order_deadline_s)
    runs: list[Run] = []
    moves: list[Advance] = []
    orders: list[tuple[str, str]] = []
    for p, claimed_key in zip(plans, accepted):
        s, payment = p.schedule, p.acceptance.payment
        runs += [Run(user_id=s.user_id, schedule_id=s.schedule_id, occurrence_at=at, outcome="skipped")
                 for at in p.skipped]
        failures, status, reason = s.consecutive_failures, s.status, None
        if claimed_key is None:  # the gate refused the counterparty: a failed run, no payment
            runs.append(Run(user_id=s.user_id, schedule_id=s.schedule_id, occurrence_at=p.occurrence_at,
                            outcome="failed", failure_code=REFUSED_CODES[s.kind]))
            failures = occurrences.failures_after(failures, occurrences.FAILED)
            result.refused += 1
            if failures >= settings.schedule_failures_max:
                status, reason = "paused", "failures_max"
                result.paused += 1
        else:
            runs.append(Run(user_id=s.user_id, schedule_id=s.schedule_id, occurrence_at=p.occurrence_at,
                            outcome="pending", payment_id=payment.payment_id, check_after=now))
            if claimed_key:
                orders.append((payment.user_id, payment.payment_order_id))
                result.created += 1
        if p.next_occurrence_at is None:
            status, reason = "ended", None
            result.ended += 1
        result.skipped += len(p.skipped)
        moves.append(Advance(user_id=s.user_id, schedule_id=s.schedule_id, status=status, paused_reason=reason,
                             consecutive_failures=failures, last_occurrence_at=p.occurrence_at,
                             next_occurrence_at=p.next_occurrence_at,
                             next_run_at=occurrences.run_at(s.schedule_id, p.next_occurrence_at,
                                                            settings.schedule_jitter_s)))
    await schedules.record_runs(conn, runs)
    await schedules.advance(conn, moves)
    return result, orders


async def run_due(pool, settings: Settings, *, now: datetime.datetime, enqueue: Enqueue,
                  batches_max: int | None = None) -> TickResult:
    """Run every schedule due at `now`, a batch (one transaction) at a time, until none is left or
    `batches_max` (default PAYCELL_SCHEDULE_CLAIM_BATCHES_MAX) batches ran; the new orders of each
    batch are sent to `screen` after its commit."""
    total = TickResult()
    for _ in range(batches_max or settings.schedule_claim_batches_max):
        async with pool.acquire() as conn:
            async with conn.transaction():
                result, orders = await run_batch(conn, settings, now=now, limit=settings.schedule_claim_batch_rows)
        for user_id, order_id in orders:
            try:
                await enqueue("screen", user_id, order_id)
            except Exception:  # the order is durable: the re-drive sweeper sends it on
                log.warning("schedule.enqueue_failed", user_id=user_id, order_id=order_id, exc_info=True)
        for name in msgspec.structs.fields(TickResult):
            setattr(total, name.name, getattr(total, name.name) + getattr(result, name.name))
        if result.batches == 0:
            break
    if total.batches:
        log.info("schedules.ran", **msgspec.structs.asdict(total))
    return total
