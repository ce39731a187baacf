"""When reconciliation runs: the periodic actors' cron expressions, in one place; the clock is
paycell.schedules.periodic (its JOBS include these), safe with any number of schedulers.

    reconcile_internal  hourly, at minute 7 (clear of the top of the hour's other jobs)
    reconcile_nightly   02:30 UTC: yesterday's report of every connector that has one, one
                        `reconcile_settlement` message per connector
"""
from __future__ import annotations

CRONS: dict[str, str] = {
    "reconcile_internal": "7 * * * *",
    "reconcile_nightly": "30 2 * * *",
}
SETTLEMENT_CONNECTORS = ("stripe", "adyen", "paypal")
SETTLEMENT_TIME_LIMIT_MS = 30 * 60_000  # a 1,000,000-line file takes minutes, not the steps' two
