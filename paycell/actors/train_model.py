"""The periodic actor that retrains the fraud model on the platform's history, weekly (Monday
03:17 UTC), and promotes it when it is no worse than the promoted one (paycell.risk.promote).

Too few labelled frauds in the window (or a slice with one class only) stops the run before
anything is stored: logged as `risk.train.skipped` with the reason, not retried (the data will not
change within the retries). Training runs in a thread; the actor's time limit is its own, hours,
not a payment step's two minutes.
"""
from __future__ import annotations

import dramatiq
import structlog
from periodiq import cron

from paycell.actors import context
from paycell.actors.broker import MAINTENANCE_QUEUE
from paycell.risk import retrain, train

log = structlog.get_logger("paycell.risk.train")

TRAIN_TIME_LIMIT_MS = 6 * 3_600_000


@dramatiq.actor(actor_name="train_model", queue_name=MAINTENANCE_QUEUE, periodic=cron("17 3 * * 1"), max_retries=0,
                time_limit=TRAIN_TIME_LIMIT_MS)
async def train_model() -> None:
    ctx = context.current()
    with context.bound(step="train_model"):
        try:
            decision, candidate = await retrain.train_history(ctx.pool, ctx.settings, trained_by="actor")
        except train.NotEnoughLabels as exc:
            log.warning("risk.train.skipped", reason=str(exc))
            return
        log.info("risk.train.done", version=decision.version, status=decision.status, note=decision.note,
                 roc_auc=round(candidate.metrics.roc_auc, 4))
