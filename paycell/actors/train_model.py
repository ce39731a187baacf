"""The periodic actor that retrains the fraud model on the platform's history weekly (Monday 03:17
UTC), promoting it when it is no worse than the promoted one: paycell.risk.retrain.weekly.

Training runs in a thread; the actor's time limit is its own (hours), not a payment step's two
minutes. Not retried: a run that fails is logged, and the next week's runs again.
"""
from __future__ import annotations

import dramatiq

from paycell.actors import context
from paycell.actors.broker import MAINTENANCE_QUEUE
from paycell.risk.retrain import weekly

TRAIN_TIME_LIMIT_MS = 6 * 3_600_000


@dramatiq.actor(actor_name="train_model", queue_name=MAINTENANCE_QUEUE, max_retries=0,
                time_limit=TRAIN_TIME_LIMIT_MS)
async def train_model() -> None:
    ctx = context.current()
    with context.bound(step="train_model"):
        await weekly(ctx.pool, ctx.settings)
