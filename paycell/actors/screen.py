"""Step 1, `requested`: the risk check (the per-payment and daily limits, before anything is
reserved or posted); then a pay-out reserves its funds and a transfer posts.

Pay-in and pay-out leave in `psp_submitting` with attempt 1 and a lease, ready for `charge`;
a transfer needs no PSP and ends here, in the same transaction. An overdraft aborts that
transaction (the ledger refuses it in Postgres); the order is then failed in a second one, so
the common path pays for no savepoint.
"""
from __future__ import annotations

import dramatiq
import structlog

from paycell import postings
from paycell.actors import context
from paycell.actors.broker import PAYMENTS_QUEUE, send
from paycell.errors import InsufficientFunds
from paycell.rules import guardrail
from paycell.store import payments, risk_totals

log = structlog.get_logger("paycell.step.screen")
ALLOWED = ("order.risk_checked", {"verdict": "allow"})


@dramatiq.actor(actor_name="screen", queue_name=PAYMENTS_QUEUE, on_retry_exhausted="record_dead_letter")
async def screen(order_id: str) -> None:
    ctx = context.current()
    with context.bound(step="screen", order_id=order_id):
        async with ctx.pool.acquire() as conn:
            try:
                async with conn.transaction():
                    next_step = await _screen(conn, ctx, order_id)
            except InsufficientFunds:
                async with conn.transaction():
                    order = await context.lock_order_in(conn, order_id, ("requested",))
                    if order is None:
                        return
                    await payments.move(conn, order, "failed", event="order.failed", milestones=(ALLOWED,),
                                        data={"reason": "insufficient_funds"}, failure_code="insufficient_funds")
                log.info("order.failed", reason="insufficient_funds")
                return
        if next_step:
            send(ctx.broker, next_step, order_id)


async def _screen(conn, ctx: context.Context, order_id: str) -> str | None:
    """Screen the order in the caller's transaction; returns the step to enqueue after commit."""
    order, accepted_minor = await risk_totals.lock_order_with_accepted_minor(conn, order_id, window_s=guardrail.DAY_S)
    order = context.in_states(order, ("requested",))
    if order is None:
        return None
    blocked = guardrail.screen(order, ctx.settings) or guardrail.screen_daily(order, accepted_minor, ctx.settings)
    if blocked:
        await payments.move(conn, order, "failed", event="order.blocked", data={"reason": blocked},
                            failure_code=blocked)
        log.info("order.blocked", reason=blocked)
        return None
    if order.kind == "transfer":
        posting = await postings.transfer(conn, order, system_slices=ctx.settings.system_account_slices)
        await payments.move(conn, order, "completed", event="order.posted", milestones=(ALLOWED,),
                            data={"transaction_id": posting.transaction_id}, ledger_updated=True, wallet_updated=True)
        log.info("order.completed")
        return None
    milestones = [ALLOWED]
    if order.kind == "payout":
        posting = await postings.reserve(conn, order, system_slices=ctx.settings.system_account_slices)
        milestones.append(("order.reserved", {"transaction_id": posting.transaction_id}))
    await payments.move(conn, order, "psp_submitting", event="order.psp_submitting", milestones=tuple(milestones),
                        data={"psp": ctx.settings.psp_default, "attempt": 1}, psp=ctx.settings.psp_default,
                        attempt=1, lease_until=payments.lease(ctx.settings.psp_lease_s))
    return "charge"
