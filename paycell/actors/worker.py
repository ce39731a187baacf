"""The worker entry point: `dramatiq paycell.actors.worker` (and `periodiq paycell.actors.worker`
for the clock). Builds the broker from the environment and registers every step."""
from __future__ import annotations

import dramatiq
from periodiq import PeriodiqMiddleware

from paycell import logs
from paycell.actors.broker import build_broker
from paycell.actors.context import StepContext
from paycell.config import load

settings = load()
logs.configure(settings.log_level)
broker = build_broker(settings, extra_middleware=[PeriodiqMiddleware(skip_delay=30), StepContext(settings)])
dramatiq.set_broker(broker)

from paycell.actors import (apply_event, charge, dead_letter, expire_reviews, proceed,  # noqa: E402,F401
                            reconcile_internal, reconcile_settlement, retention, screen, settle, sweep,
                            train_model)  # (registers the actors)
