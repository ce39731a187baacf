"""The workers' metrics, served by Dramatiq's Prometheus middleware on a port of their own.

A `paycell worker` is a group of processes (Dramatiq's main process, its worker processes and a
small exposition server it forks). prometheus_client's multiprocess mode lets them share one set of
figures: every process writes its counters to files in one folder, and the exposition server sums
them per scrape. `prepare` (called by `paycell worker` before anything imports prometheus_client)
picks the folder, empties it of an earlier run's files and tells prometheus_client and the
middleware where it is and where to listen (PAYCELL_WORKER_METRICS_HOST/PORT; port 0: not served).

What a scrape of `http://HOST:PORT/metrics` shows:
- Dramatiq's, per queue and actor (one actor per payment step): `dramatiq_messages_total`,
  `dramatiq_message_errors_total`, `dramatiq_message_retries_total`, `dramatiq_message_rejects_total`
  (dead-lettered), `dramatiq_messages_inprogress`, `dramatiq_message_duration_milliseconds`
  (the step's duration, a histogram);
- paycell's pipeline (paycell/metrics/outcomes.py): `paycell_payments_finished_total{kind,
  connector, status, code}` and `paycell_payment_completion_seconds{kind, status}`.
The listener binds 127.0.0.1 by default: the figures carry no secrets, but nothing outside the host
needs them unless an operator opens it (set the host, behind the network's own controls).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from paycell.config import Settings

SERVED = "PAYCELL_WORKER_METRICS_SERVED"


def prepare(settings: Settings) -> Path | None:
    """Point this process (and the processes it starts) at a fresh metrics folder; None when the
    metrics are not served. Must run before prometheus_client is first imported."""
    if not settings.worker_metrics_port:
        os.environ.pop(SERVED, None)
        return None
    folder = Path(tempfile.gettempdir()) / f"paycell-worker-metrics-{os.getuid()}-{settings.worker_metrics_port}"
    folder.mkdir(mode=0o700, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    os.environ["dramatiq_prom_db"] = str(folder)
    os.environ["dramatiq_prom_host"] = settings.worker_metrics_host
    os.environ["dramatiq_prom_port"] = str(settings.worker_metrics_port)
    os.environ[SERVED] = "1"
    return folder


def middleware() -> list:
    """Dramatiq's Prometheus middleware when `prepare` set this worker group up to serve metrics."""
    if os.environ.get(SERVED) != "1":
        return []
    from dramatiq.middleware.prometheus import Prometheus
    return [Prometheus()]
