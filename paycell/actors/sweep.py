"""The periodic actor that runs the re-drive sweeper (paycell.sweeper) once a minute."""
from __future__ import annotations

import dramatiq
from periodiq import cron

from paycell.actors import context
from paycell.actors.broker import MAINTENANCE_QUEUE
from paycell.sweeper import sweep_once


@dramatiq.actor(actor_name="sweep", queue_name=MAINTENANCE_QUEUE, periodic=cron("* * * * *"), max_retries=0)
async def sweep() -> None:
    ctx = context.current()
    await sweep_once(ctx.pool, ctx.broker, ctx.settings)
