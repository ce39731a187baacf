"""The hourly internal reconciliation (paycell.reconcile.internal). Safe with two runners: every
break is opened once per subject and every fix re-checks its order under the order's lock."""
from __future__ import annotations

import dramatiq

from paycell.actors import context
from paycell.actors.broker import MAINTENANCE_QUEUE
from paycell.reconcile.internal import run_internal


# Hourly: paycell.schedules.periodic runs it on its slot of paycell.reconcile.schedule.CRONS.
@dramatiq.actor(actor_name="reconcile_internal", queue_name=MAINTENANCE_QUEUE, max_retries=0)
async def reconcile_internal() -> None:
    ctx = context.current()
    with context.bound(step="reconcile_internal"):
        await run_internal(ctx)
