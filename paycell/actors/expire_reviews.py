"""The periodic actor that applies the review queue's expiry policy once a minute
(paycell.reviews.expire_due: PAYCELL_REVIEW_EXPIRY_S, PAYCELL_REVIEW_EXPIRY_ACTION), then sends
the orders it approved to `proceed`. Safe with two runners: items and orders are taken with
SKIP LOCKED and re-checked under their locks."""
from __future__ import annotations

import dramatiq

from paycell import reviews
from paycell.actors import context
from paycell.actors.broker import MAINTENANCE_QUEUE, send


@dramatiq.actor(actor_name="expire_reviews", queue_name=MAINTENANCE_QUEUE,
                max_retries=0)
async def expire_reviews() -> None:
    ctx = context.current()
    with context.bound(step="expire_reviews"):
        result = await reviews.expire_due(ctx.pool, ctx.settings)
    for user_id, order_id in result.proceed:
        send(ctx.broker, "proceed", user_id, order_id)
