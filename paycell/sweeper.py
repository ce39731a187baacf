"""The re-drive sweeper: messages are hints, the order's state is the truth. Every live order
whose lease ran out gets the step its state calls for enqueued again; one past its deadline
goes to `needs_attention`. This makes a lost message (Redis flushed, a worker SIGKILLed, a crash
between commit and enqueue) harmless. The same holds for provider events: an unapplied one whose
retry time has come (its message lost, or no order carried it yet) is sent to `apply_event`
again, until its attempts run out; and for reversals: a live one whose lease ran out is sent to
`reverse` again (which asks the PSP before it sends anything twice)."""
from __future__ import annotations

import dramatiq
import msgspec
import structlog

from paycell import workflow
from paycell.actors.broker import send
from paycell.config import Settings
from paycell.store import inbox, payments, sweeps

log = structlog.get_logger("paycell.sweep")
SWEEP_BATCH_MAX = 1_000


class SweepResult(msgspec.Struct):
    redriven: dict[str, int]
    overdue: int
    events: int = 0  # unapplied provider events sent again
    reversals: int = 0  # live reversals whose step was sent again


async def sweep_once(pool, broker: dramatiq.Broker, settings: Settings, *, limit: int = SWEEP_BATCH_MAX) -> SweepResult:
    async with pool.acquire() as conn, conn.transaction():
        due = await sweeps.claim_due(conn, limit=limit, lease_s=settings.psp_lease_s)
    result = SweepResult(redriven={}, overdue=0)
    for row in due:
        user_id, order_id, state = row["user_id"], row["payment_order_id"], row["payment_order_status"]
        if row["overdue"]:
            async with pool.acquire() as conn, conn.transaction():
                order = await payments.lock_order(conn, user_id, order_id)
                if order is not None and order.payment_order_status in workflow.LIVE:
                    # A charge pending at its PSP got its own deadline (actors/charge.py): the same
                    # column, and the same failure code the polling charge step gives it.
                    code = workflow.PENDING_DEADLINE if order.payment_order_status == "psp_pending" else "deadline_exceeded"
                    await payments.move(conn, order, "needs_attention", event="order.needs_attention",
                                        data={"reason": code, "state": state}, failure_code=code)
                    result.overdue += 1
            continue
        step = workflow.step_for(state)
        send(broker, step, user_id, order_id)
        result.redriven[step] = result.redriven.get(step, 0) + 1
    async with pool.acquire() as conn, conn.transaction():
        due_events = await inbox.claim_due(conn, limit=limit, attempts_max=settings.psp_event_apply_attempts_max,
                                           retry_s=settings.psp_event_retry_s)
    for connector, event_id in due_events:
        send(broker, "apply_event", connector, event_id)
    result.events = len(due_events)
    async with pool.acquire() as conn, conn.transaction():
        due_reversals = await sweeps.claim_due_reversals(conn, limit=limit, lease_s=settings.psp_lease_s)
    for row in due_reversals:
        send(broker, "reverse", row["user_id"], row["reversal_id"])
    result.reversals = len(due_reversals)
    if due or due_events or due_reversals:
        log.info("sweep.done", redriven=result.redriven, overdue=result.overdue, events=result.events,
                 reversals=result.reversals)
    return result
