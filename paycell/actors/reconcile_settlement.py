"""Nightly settlement reconciliation: `reconcile_nightly` (periodic) sends one
`reconcile_settlement(connector, day)` per connector with a report, for yesterday (UTC); each
downloads that day's report (paycell.reconcile.fetch) and ingests it (paycell.reconcile.settlement).
A retried or doubled message is harmless: a file already ingested (same hash) changes nothing."""
from __future__ import annotations

import datetime
import tempfile
from pathlib import Path

import dramatiq
import structlog

from paycell.actors import context
from paycell.actors.broker import MAINTENANCE_QUEUE
from paycell.reconcile import fetch, settlement
from paycell.reconcile.schedule import SETTLEMENT_CONNECTORS, SETTLEMENT_TIME_LIMIT_MS

log = structlog.get_logger("paycell.reconcile.nightly")


# Nightly: paycell.schedules.periodic runs it on its slot of paycell.reconcile.schedule.CRONS.
@dramatiq.actor(actor_name="reconcile_nightly", queue_name=MAINTENANCE_QUEUE, max_retries=0)
def reconcile_nightly() -> None:
    day = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)).date()
    for connector in SETTLEMENT_CONNECTORS:
        reconcile_settlement.send(connector, day.isoformat())


@dramatiq.actor(actor_name="reconcile_settlement", queue_name=MAINTENANCE_QUEUE, max_retries=3,
                time_limit=SETTLEMENT_TIME_LIMIT_MS)
async def reconcile_settlement(connector: str, day: str) -> None:
    ctx = context.current()
    with context.bound(step="reconcile_settlement", connector=connector, day=day), \
            tempfile.TemporaryDirectory(prefix="paycell-settlement-") as directory:
        path = await fetch.download(ctx.settings, connector, datetime.date.fromisoformat(day), Path(directory))
        ingested = await settlement.reconcile_file(ctx, connector, path)
        log.info("reconcile.nightly_file", run_id=ingested.run.run_id, replayed=ingested.replayed)
