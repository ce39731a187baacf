"""Step `psp_submitting` / `psp_pending`: ask the PSP to move the money, outside any database
transaction, then record what it said.

The order id is the PSP's idempotency key. On the first attempt the charge is submitted
directly; on any later one (a retry after a timeout or a lost response, a re-drive, a pending
charge) the PSP is first ASKED for the charge's status and only submitted to when it says it
has none. A transient failure bumps the attempt and the lease, then raises for Dramatiq's
Retries; a decline is an outcome, not an error, and is never retried.

Unknown is not declined: only the PSP's explicit decline fails an order. A request the PSP
refuses as invalid (PspRejected) fails the order only on the first attempt, and only once the
PSP has said it holds no charge under the order's key; after an ambiguous attempt, a refusal
(or any 4xx of a status call) is retried like any unknown outcome and, when retries run out,
the order goes to needs_attention with a pay-out's reserve kept. Failing it instead would
release money the PSP may already have paid out.
"""
from __future__ import annotations

import dramatiq
import structlog
from limits.errors import StorageError

from paycell import postings
from paycell.actors import context
from paycell.actors.broker import PAYMENTS_QUEUE, STEP_QUEUES, Transient, send
from paycell.actors.settle import complete
from paycell.errors import PaycellError
from paycell.psp.base import Charge, PspRejected, PspResult, PspTransientError
from paycell.store import payments
from paycell.workflow import Order

log = structlog.get_logger("paycell.step.charge")
PSP_STATES = ("psp_submitting", "psp_pending")


def charge_for(order: Order) -> Charge:
    instrument = order.from_acct if order.kind == "payin" else order.to_acct
    return Charge(idempotency_key=order.payment_order_id, direction=order.kind, amount_minor=order.amount_minor,
                  currency=order.currency, instrument=instrument)


@dramatiq.actor(actor_name="charge", queue_name=PAYMENTS_QUEUE, on_retry_exhausted="record_dead_letter")
async def charge(order_id: str) -> None:
    ctx = context.current()
    with context.bound(step="charge", order_id=order_id):
        async with ctx.pool.acquire() as conn:
            order = await payments.read_order(conn, order_id)
        if order is None or order.payment_order_status not in PSP_STATES:
            log.info("step.skipped", state=order and order.payment_order_status)
            return
        structlog.contextvars.bind_contextvars(payment_id=order.payment_id, attempt=order.attempt)
        psp = ctx.psp(order.psp)
        outcome_unknown = order.attempt > 1 or order.payment_order_status == "psp_pending"
        try:
            result = await psp.status(charge_for(order)) if outcome_unknown else None
            if result is None:
                result = await _submit(psp, order, outcome_unknown)
        except (PspTransientError, PspRejected) as exc:
            await _note_transient(ctx, order_id, str(exc) or type(exc).__name__)
            raise Transient(f"PSP {order.psp}: {exc}") from exc
        if await _record(ctx, order_id, result) == "declined":  # not when a duplicate message found it done
            await _count_decline(ctx, charge_for(order).instrument)


async def _count_decline(ctx: context.Context, instrument: str) -> None:
    """Feed the instrument's decline count (paycell.velocity), after the decline is committed. The
    count is a guard, not a record: when Redis is unreachable it misses one decline rather than
    fail a step whose outcome is already stored."""
    try:
        await ctx.velocity.record_decline(instrument)
    except StorageError:
        log.warning("velocity.decline_not_counted", instrument=instrument, exc_info=True)


async def _submit(psp, order: Order, outcome_unknown: bool) -> PspResult:
    """Submit the charge. A refusal on a clean first attempt fails the order only once the PSP
    confirms it holds no charge under the key; otherwise PspRejected propagates (unknown)."""
    try:
        return await psp.submit(charge_for(order))
    except PspRejected as exc:
        log.warning("psp.rejected", error=str(exc), outcome_unknown=outcome_unknown)
        if outcome_unknown:
            raise
        found = await psp.status(charge_for(order))
        if found is not None:
            return found
        return PspResult(status="declined", psp_reference="", decline_code="psp_rejected")


async def _note_transient(ctx: context.Context, order_id: str, error: str) -> None:
    """The outcome is unknown: the next attempt must ask before it submits again."""
    lease_s = ctx.settings.psp_lease_s + ctx.settings.retry_backoff_max_ms / 1000
    async with ctx.pool.acquire() as conn, conn.transaction():
        order = await payments.lock_order(conn, order_id)
        if order is None or order.payment_order_status not in PSP_STATES:
            return
        await payments.move(conn, order, order.payment_order_status, event="order.psp_attempt_failed",
                            data={"attempt": order.attempt, "error": error[:500]},
                            attempt=order.attempt + 1, lease_until=payments.lease(lease_s), last_error=error[:500])
    log.warning("psp.transient_failure", error=error)


async def _record(ctx: context.Context, order_id: str, result: PspResult) -> str | None:
    follow_up = None
    async with ctx.pool.acquire() as conn:
        try:
            async with conn.transaction():
                follow_up = await _record_outcome(conn, ctx, order_id, result)
        except PaycellError as exc:
            # The ledger refused the settlement (the seed's edge cases 6 and 7): the PSP's answer
            # must still be kept, so record it alone and let `settle` retry the posting.
            log.error("posting.failed", error=str(exc))
            async with conn.transaction():
                order = await context.lock_order_in(conn, order_id, PSP_STATES)
                if order is None:
                    return
                ref = result.psp_reference or None
                await payments.move(conn, order, "psp_succeeded", event="order.posting_failed",
                                    milestones=(("order.psp_succeeded", {"psp_reference": ref}),),
                                    data={"error": str(exc)[:500]}, psp_reference=ref,
                                    lease_until=payments.lease(ctx.settings.psp_lease_s), last_error=str(exc)[:500])
            follow_up = "settle"
    log.info("psp.outcome", status=result.status, psp_reference=result.psp_reference)
    if follow_up == "settle":
        send(ctx.broker, "settle", order_id)
    elif follow_up == "poll":
        ctx.broker.enqueue(dramatiq.Message(queue_name=STEP_QUEUES["charge"], actor_name="charge",
                                            args=(order_id,), kwargs={}, options={}),
                           delay=ctx.settings.psp_poll_interval_ms)
    return follow_up


async def _record_outcome(conn, ctx: context.Context, order_id: str, result: PspResult) -> str | None:
    """Record the PSP's answer in the caller's transaction; returns the follow-up, if any
    ("declined" when this call failed the order on a decline)."""
    order = await context.lock_order_in(conn, order_id, PSP_STATES)
    if order is None:
        return None
    ref = result.psp_reference or None
    if result.status == "succeeded":
        await complete(conn, ctx, order, milestones=(("order.psp_succeeded", {"psp_reference": ref}),),
                       psp_reference=ref)
        return None
    if result.status == "declined":
        code = result.decline_code or "declined"
        milestones = [("order.psp_failed", {"decline_code": code, "psp_reference": ref})]
        if order.kind == "payout":
            posting = await postings.release(conn, order, system_slices=ctx.settings.system_account_slices)
            milestones.append(("order.released", {"transaction_id": posting.transaction_id}))
        await payments.move(conn, order, "failed", event="order.failed", milestones=tuple(milestones),
                            data={"reason": code}, failure_code=code, psp_reference=ref)
        return "declined"
    poll_s = ctx.settings.psp_poll_interval_ms / 1000
    await payments.move(conn, order, "psp_pending", event="order.psp_pending", data={"psp_reference": ref},
                        psp_reference=ref, lease_until=payments.lease(poll_s + ctx.settings.psp_lease_s))
    return "poll"
