"""Step `in_review`: continue a parked payment according to its review item's resolution
(paycell/reviews.py), under the order's row lock.

- approved (by an operator, or by the expiry policy): the order continues exactly as an allowed
  one (paycell/actors/dispatch.py: routing, breakers, psp_submitting and `charge`, or a transfer's
  posting); a pay-out keeps the reserve it took before it was parked. A transfer the wallet can
  no longer cover fails `insufficient_funds`.
- declined: the resolution failed the order in its own transaction; this step only meets a
  declined item when the order had left `in_review` then (needs_attention) and was reopened:
  it fails it now (`review_declined` / `review_expired`), releasing a pay-out's reserve.
- unresolved: a re-drive by the sweeper (the order's lease ran out): the order stays parked,
  its lease moved back to the item's expiry.
Idempotent: the state is checked under the lock, so a second delivery finds the order moved on
and does nothing.
"""
from __future__ import annotations

import dramatiq
import structlog

from paycell import reviews
from paycell.actors import context
from paycell.actors.broker import PAYMENTS_QUEUE, send
from paycell.actors.dispatch import candidates_for, dispatch, fail, fail_insufficient
from paycell.errors import InsufficientFunds
from paycell.psp import routing
from paycell.store import payments, risk_totals
from paycell.store import reviews as review_store

log = structlog.get_logger("paycell.step.proceed")
PARKED = ("in_review",)
NO_REVIEW = "review_missing"  # needs_attention: a parked order without its item (never written so)


@dramatiq.actor(actor_name="proceed", queue_name=PAYMENTS_QUEUE, on_retry_exhausted="record_dead_letter")
async def proceed(*ids: str) -> None:
    """`ids`: (user_id, order_id); for one release also (order_id,) (context.order_key)."""
    ctx = context.current()
    key = await context.order_key(ctx, "proceed", ids)
    if key is None:
        return
    user_id, order_id = key
    with context.bound(step="proceed", user_id=user_id, order_id=order_id):
        async with ctx.pool.acquire() as conn:
            try:
                async with conn.transaction():
                    next_step = await _proceed(conn, ctx, user_id, order_id)
            except InsufficientFunds:
                await fail_insufficient(conn, ctx.settings, user_id, order_id, PARKED)
                return
        if next_step:
            send(ctx.broker, next_step, user_id, order_id)


async def _proceed(conn, ctx: context.Context, user_id: str, order_id: str) -> str | None:
    order, attached = await risk_totals.lock_order_with_attached(conn, user_id, order_id,
                                                                 connectors=routing.names_to_check(ctx.settings))
    order = context.in_states(order, PARKED)
    if order is None:
        return None
    item = await review_store.for_order(conn, order.user_id, order_id)
    if item is None:
        await payments.move(conn, order, "needs_attention", event="order.needs_attention",
                            data={"reason": NO_REVIEW}, failure_code=NO_REVIEW)
        log.error("order.review_missing")
        return None
    structlog.contextvars.bind_contextvars(review_id=item.review_id)
    if not item.resolved:
        await reviews.hold(conn, order, item, ctx.settings)
        log.info("order.still_in_review", review_state=item.state)
        return None
    if item.outcome == "decline":
        await fail(conn, ctx.settings, order, reviews.EXPIRED if item.state == "expired" else reviews.DECLINED,
                   data={"review_id": item.review_id})
        log.info("order.failed", reason="review_declined")
        return None
    candidates = candidates_for(ctx, order, attached) if order.kind != "transfer" else []
    return await dispatch(conn, ctx, order, candidates, data={"review_id": item.review_id})
