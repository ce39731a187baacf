"""The worker entry point: `dramatiq paycell.actors.worker`. Builds the broker from the environment
and registers every step. The periodic actors' clock is `paycell scheduler` (paycell/schedules)."""
from __future__ import annotations

import dramatiq

from paycell import logs
from paycell.actors.broker import build_broker
from paycell.actors.context import StepContext
from paycell.actors.shutdown import OneStopSignal
from paycell.config import load
from paycell.metrics import worker as worker_metrics

settings = load()
logs.configure(settings.log_level, settings.log_format)
broker = build_broker(settings, extra_middleware=[StepContext(settings), OneStopSignal(),
                                                       *worker_metrics.middleware()])
dramatiq.set_broker(broker)

from paycell.actors import (apply_event, charge, dead_letter, expire_reviews, proceed,  # noqa: E402,F401
                            reconcile_internal, reconcile_settlement, retention, reverse, screen, settle, sweep,
                            train_model)  # (registers the actors)
