"""The periodic actor that runs the re-drive sweeper (paycell.sweeper): enqueued once a minute by the
scheduler's clock (paycell/schedules/periodic.py)."""
from __future__ import annotations

import dramatiq

from paycell.actors import context
from paycell.actors.broker import MAINTENANCE_QUEUE
from paycell.sweeper import sweep_once


@dramatiq.actor(actor_name="sweep", queue_name=MAINTENANCE_QUEUE, max_retries=0)
async def sweep() -> None:
    ctx = context.current()
    await sweep_once(ctx.pool, ctx.broker, ctx.settings)
