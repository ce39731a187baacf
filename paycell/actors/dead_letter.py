"""When a step's retries run out, Dramatiq dead-letters its message and sends it here: record it
in Postgres and move its order to `needs_attention`, so no payment is ever silently stuck.

Two exceptions. A `settle` whose posting failed past its retries after the PSP moved the money is
handed to the reversal policy (paycell/reversals/policy.py): for a failure kind it says `reverse`,
the order moves to `reversing` and its reversal is recorded instead, and `reverse` is sent after
the commit. A `reverse` message (user id, reversal id) sends its reversal to needs_attention (and
its order, when the policy was reversing it)."""
from __future__ import annotations

import dramatiq
import structlog

from paycell import workflow
from paycell.actors import context
from paycell.actors.broker import MAINTENANCE_QUEUE, order_of_message, send
from paycell.reversals import outcome as reversal_outcome
from paycell.reversals import policy
from paycell.store import dead_letters, payments

log = structlog.get_logger("paycell.dead_letter")


@dramatiq.actor(actor_name="record_dead_letter", queue_name=MAINTENANCE_QUEUE)
async def record_dead_letter(message: dict, retry_info: dict) -> None:
    ctx = context.current()
    args = message.get("args") or []
    # The payment steps take (user id, order id), or (order id) when sent before the deploy that
    # added the user; `apply_event` takes (connector, event id): its event stays unapplied.
    order_id = order_of_message(message["actor_name"], args)
    trace = (message.get("options") or {}).get("traceback") or "retries exhausted"
    error = trace.strip().splitlines()[-1][:500]
    reversing = None
    with context.bound(step="record_dead_letter", order_id=order_id, message_id=message.get("message_id")):
        async with ctx.pool.acquire() as conn, conn.transaction():
            key = await payments.order_key(conn, args) if order_id else None
            if key is not None:
                structlog.contextvars.bind_contextvars(user_id=key[0])
            await dead_letters.record(conn, message_id=message["message_id"], queue_name=message["queue_name"],
                                      actor_name=message["actor_name"], payment_order_id=order_id, message=message,
                                      error=error)
            if message["actor_name"] == "reverse" and len(args) == 2:
                order, reversal = await reversal_outcome.lock(conn, *args)
                if reversal is not None:
                    await reversal_outcome.give_up(conn, order, reversal, error)
            order = await payments.lock_order(conn, *key) if key else None
            kind = policy.failure_kind(error)
            if (order is not None and message["actor_name"] == "settle" and order.payment_order_status == "psp_succeeded"
                    and policy.action_for(ctx.settings, kind) == "reverse"):
                reversing = await policy.reverse_unposted(conn, ctx.settings, order, kind=kind, error=error)
            elif order is not None and order.payment_order_status in workflow.LIVE:
                await payments.move(conn, order, "needs_attention", event="order.needs_attention",
                                    data={"reason": "retries_exhausted", "step": message["actor_name"],
                                          "retries": retry_info.get("retries"), "error": error},
                                    failure_code="retries_exhausted", last_error=error)
        log.error("message.dead_lettered", actor=message["actor_name"], error=error)
        if reversing is not None:
            send(ctx.broker, "reverse", reversing.user_id, reversing.reversal_id)
