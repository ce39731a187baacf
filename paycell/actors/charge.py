"""Step `psp_submitting` / `psp_pending` / `requires_action`: ask the PSP to move the money,
outside any database transaction, then record what it said (paycell.actors.outcome, which the
webhook applier shares).

The order id is the PSP's idempotency key. On the first attempt the charge is submitted
directly; on any later one (a retry after a timeout or a lost response, a re-drive, a pending
charge) the PSP is first ASKED for the charge's status and only submitted to when it says it
has none (a charge waiting for its customer is asked too: `status` captures one the customer
has approved, where the provider needs that). A transient failure bumps the attempt and the
lease, then raises for Dramatiq's Retries; a decline is an outcome, not an error, and is never
retried.

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
from yarl import URL

from paycell.actors import context, outcome
from paycell.actors.broker import PAYMENTS_QUEUE, Transient
from paycell.errors import PaycellError
from paycell.psp.base import Charge, PspRejected, PspResult, PspTransientError
from paycell.store import payments
from paycell.workflow import Order

log = structlog.get_logger("paycell.step.charge")
PSP_STATES = outcome.ACTIVE


def charge_for(order: Order, return_url: str | None = None) -> Charge:
    """The charge to ask of the PSP; a customer sent to act at the provider comes back to
    `return_url` (PAYCELL_PSP_RETURN_URL) with the order's id (paycell.http.returns)."""
    instrument = order.from_acct if order.kind == "payin" else order.to_acct
    back = str(URL(return_url).update_query(order_id=order.payment_order_id)) if return_url else None
    return Charge(idempotency_key=order.payment_order_id, direction=order.kind, amount_minor=order.amount_minor,
                  currency=order.currency, instrument=instrument, psp_reference=order.psp_reference,
                  return_url=back)


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
        request = charge_for(order, ctx.settings.psp_return_url)
        outcome_unknown = order.attempt > 1 or order.payment_order_status != "psp_submitting"
        try:
            result = await psp.status(request) if outcome_unknown else None
            if result is None:
                result = await _submit(psp, request, outcome_unknown)
        except (PspTransientError, PspRejected) as exc:
            await _note_transient(ctx, order_id, str(exc) or type(exc).__name__)
            raise Transient(f"PSP {order.psp}: {exc}") from exc
        await _record(ctx, order_id, result)


async def _submit(psp, request: Charge, outcome_unknown: bool) -> PspResult:
    """Submit the charge. A refusal on a clean first attempt fails the order only once the PSP
    confirms it holds no charge under the key; otherwise PspRejected propagates (unknown)."""
    try:
        return await psp.submit(request)
    except PspRejected as exc:
        log.warning("psp.rejected", error=str(exc), outcome_unknown=outcome_unknown)
        if outcome_unknown:
            raise
        found = await psp.status(request)
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
    """Record the PSP's answer through the shared outcome code (paycell.actors.outcome), which the
    webhook applier uses too; returns the follow-up it called for."""
    follow_up = order = None
    async with ctx.pool.acquire() as conn:
        try:
            async with conn.transaction():
                order = await context.lock_order_in(conn, order_id, PSP_STATES)
                if order is not None:
                    follow_up = await outcome.record_outcome(conn, ctx, order, result)
        except PaycellError as exc:
            log.error("posting.failed", error=str(exc))
            async with conn.transaction():
                order = await context.lock_order_in(conn, order_id, PSP_STATES)
                if order is None:
                    return None
                follow_up = await outcome.record_posting_failed(conn, ctx, order, result, str(exc))
    log.info("psp.outcome", status=result.status, psp_reference=result.psp_reference)
    if order is not None:
        await outcome.after_commit(ctx, order, follow_up, charge_for(order).instrument)
    return follow_up
