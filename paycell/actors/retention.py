"""The periodic actor that deletes expired idempotency keys (paycell.retention) every hour."""
from __future__ import annotations

import dramatiq

from paycell.actors import context
from paycell.actors.broker import MAINTENANCE_QUEUE
from paycell.retention import expire_idempotency_keys


@dramatiq.actor(actor_name="expire_idempotency_keys", queue_name=MAINTENANCE_QUEUE,
                max_retries=0)
async def expire_idempotency_keys_periodically() -> None:
    ctx = context.current()
    await expire_idempotency_keys(ctx.pool, ctx.settings)
