"""Step 1, `requested`: the risk check; then a pay-out reserves its funds and a transfer posts.

Pay-in and pay-out leave in `psp_submitting` with attempt 1 and a lease, ready for `charge`;
a transfer needs no PSP and ends here, in the same transaction.
"""
from __future__ import annotations

import dramatiq
import structlog

from paycell import postings
from paycell.actors import context
from paycell.actors.broker import PAYMENTS_QUEUE, send
from paycell.errors import InsufficientFunds
from paycell.rules import guardrail
from paycell.store import events, payments

log = structlog.get_logger("paycell.step.screen")


@dramatiq.actor(actor_name="screen", queue_name=PAYMENTS_QUEUE, on_retry_exhausted="record_dead_letter")
async def screen(order_id: str) -> None:
    ctx = context.current()
    with context.bound(step="screen", order_id=order_id):
        async with ctx.pool.acquire() as conn, conn.transaction():
            order = await context.lock_order_in(conn, order_id, ("requested",))
            if order is None:
                return
            blocked = guardrail.screen(order, ctx.settings)
            if blocked:
                await payments.move(conn, order, "failed", event="order.blocked", data={"reason": blocked},
                                    failure_code=blocked)
                log.info("order.blocked", reason=blocked)
                return
            await events.append(conn, user_id=order.user_id, type="order.risk_checked", payment_id=order.payment_id,
                                payment_order_id=order_id, data={"verdict": "allow"})
            if order.kind in ("transfer", "payout"):
                try:
                    async with conn.transaction():  # a savepoint: an overdraft must not abort the order's update
                        posting = await (postings.transfer if order.kind == "transfer" else postings.reserve)(
                            conn, ctx.book, order)
                except InsufficientFunds:
                    await payments.move(conn, order, "failed", event="order.failed",
                                        data={"reason": "insufficient_funds"}, failure_code="insufficient_funds")
                    log.info("order.failed", reason="insufficient_funds")
                    return
            if order.kind == "transfer":
                await payments.move(conn, order, "completed", event="order.posted",
                                    data={"transaction_id": posting.transaction_id},
                                    ledger_updated=True, wallet_updated=True)
                log.info("order.completed")
                return
            if order.kind == "payout":
                await events.append(conn, user_id=order.user_id, type="order.reserved", payment_id=order.payment_id,
                                    payment_order_id=order_id, data={"transaction_id": posting.transaction_id})
            await payments.move(conn, order, "psp_submitting", event="order.psp_submitting",
                                data={"psp": ctx.settings.psp_default, "attempt": 1},
                                psp=ctx.settings.psp_default, attempt=1, lease_until=payments.lease(ctx.settings.psp_lease_s))
        send(ctx.broker, "charge", order_id)
