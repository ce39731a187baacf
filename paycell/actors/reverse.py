"""Step `reverse`: carry out one reversal (a refund of a pay-in, the recall of a pay-out) at its
payment's PSP, exactly once, and post its compensating transaction.

It reads as the charge step does: lock the order then the reversal in a state this step acts on,
record the attempt (psp_submitting, attempt n, a lease) and commit; call the PSP outside any
transaction with the reversal id as the provider's idempotency key, asking its status first when
an earlier attempt may have reached it (a timeout, a lost answer, a crash before the outcome was
recorded); then record the outcome in a new transaction (paycell/reversals/outcome.py). A PSP that
does not answer raises Transient: Dramatiq retries with backoff, and when the retries run out the
dead-letter actor sends the reversal to needs_attention. A lost message is re-driven by the
sweeper once the reversal's lease runs out.
"""
from __future__ import annotations

import dramatiq
import structlog

from paycell.actors import context
from paycell.actors.broker import PAYMENTS_QUEUE, Transient
from paycell.actors.charge import charge_for
from paycell.psp.base import PspRejected, PspTransientError, Reversal, ReversalResult, ReversalUnsupported
from paycell.reversals import outcome
from paycell.store import payments
from paycell.store import reversals as store
from paycell.workflow import REVERSAL_LIVE

log = structlog.get_logger("paycell.step.reverse")


@dramatiq.actor(actor_name="reverse", queue_name=PAYMENTS_QUEUE, on_retry_exhausted="record_dead_letter")
async def reverse(user_id: str, reversal_id: str) -> None:
    ctx = context.current()
    with context.bound(step="reverse", reversal_id=reversal_id, user_id=user_id):
        async with ctx.pool.acquire() as conn, conn.transaction():
            order, reversal = await outcome.lock(conn, user_id, reversal_id)
            if order is None or reversal is None or reversal.state not in REVERSAL_LIVE:
                log.info("step.skipped", state=reversal and reversal.state)
                return
            structlog.contextvars.bind_contextvars(order_id=order.payment_order_id, payment_id=order.payment_id)
            ask_first = reversal.attempt > 0
            await store.move(conn, reversal, "psp_submitting", event="reversal.psp_submitting",
                                     data={"attempt": reversal.attempt + 1, "psp": reversal.psp},
                                     attempt=reversal.attempt + 1,
                                     lease_until=payments.lease(ctx.settings.psp_lease_s))
        asked = Reversal(idempotency_key=reversal.reversal_id, charge=charge_for(order), amount_minor=reversal.amount_minor,
                         currency=reversal.currency, reason=reversal.reason)
        psp = ctx.psp(reversal.psp)
        try:
            result = await _ask(psp, asked, ask_first)
        except ReversalUnsupported as exc:
            await _refused(ctx, user_id, reversal_id, "reversal_not_supported", str(exc))
            return
        except PspRejected as exc:
            await _refused(ctx, user_id, reversal_id, "psp_rejected", str(exc))
            return
        except PspTransientError as exc:
            log.warning("reversal.psp_unknown", error=str(exc))
            raise Transient(f"PSP {reversal.psp}: {exc}") from exc
        async with ctx.pool.acquire() as conn, conn.transaction():
            order, reversal = await outcome.lock(conn, user_id, reversal_id)
            if reversal is None or reversal.state != "psp_submitting":
                log.info("step.skipped", state=reversal and reversal.state)
                return
            await outcome.record(conn, ctx.settings, order, reversal, result)
        log.info("reversal.recorded", status=result.status, psp_reference=result.psp_reference)


async def _ask(psp, asked: Reversal, ask_first: bool) -> ReversalResult:
    """The PSP's answer for the reversal: its status first when an earlier attempt may have reached it."""
    if not hasattr(psp, "reverse"):
        raise ReversalUnsupported(f"connector {psp.name} has no reversals")
    if ask_first:
        found = await psp.reversal_status(asked)
        if found is not None:
            return found
    return await psp.reverse(asked)


async def _refused(ctx: context.Context, user_id: str, reversal_id: str, code: str, error: str) -> None:
    async with ctx.pool.acquire() as conn, conn.transaction():
        order, reversal = await outcome.lock(conn, user_id, reversal_id)
        if reversal is not None and reversal.state == "psp_submitting":
            await outcome.fail(conn, order, reversal, code, error=error)
