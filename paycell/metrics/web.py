"""The web process's metrics, served at `GET /metrics` (Prometheus text format) to operators.

Each app has a registry of its own (tests build many apps in one process):
- `paycell_http_request_duration_seconds{route, method, status}`: a histogram per route template
  (never the raw path: one series per payment id would grow without bound), `unmatched` for 404s;
- `paycell_payments_queue_depth` and `paycell_payments_queue_oldest_age_seconds`: the backlog the
  admission gate reads (paycell/admission/lag.py), as of its last reading, read at scrape time
  (on RabbitMQ the age gauge has no sample: the broker does not tell it);
- `paycell_admission_refused_total`: new payments refused with 503 pipeline_behind;
- the system's gauges, read from Postgres and Redis at scrape time (paycell/metrics/system.py);
- the process-wide registry: payments accepted (paycell/metrics/outcomes.py) and the Python
  process's own (CPU, memory, open files, GC).
The workers export theirs on a port of their own (paycell/metrics/worker.py).
"""
from __future__ import annotations

from collections.abc import Callable

import asyncpg
from prometheus_client import REGISTRY, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from paycell.admission.lag import Lag
from paycell.metrics.system import SystemMetrics

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS_S = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Admission:
    """A collector reading the admission sampler's last reading and the gate's refusals when
    Prometheus scrapes."""

    def __init__(self, latest: Callable[[], Lag | None], refused: Callable[[], int]):
        self._latest, self._refused = latest, refused

    def collect(self):
        refused = CounterMetricFamily("paycell_admission_refused", "new payments refused: the pipeline is behind")
        refused.add_metric([], self._refused())
        yield refused
        lag = self._latest()
        depth = GaugeMetricFamily("paycell_payments_queue_depth", "payment messages no worker has taken")
        age = GaugeMetricFamily("paycell_payments_queue_oldest_age_seconds",
                                "age of the oldest payment message no worker has taken")
        if lag is not None:
            depth.add_metric([], lag.depth)
            if lag.oldest_age_known:  # on RabbitMQ it is not readable (paycell/admission/lag.py): no sample
                age.add_metric([], lag.oldest_age_ms / 1000)
        yield depth
        yield age


class WebMetrics:
    def __init__(self, latest_lag: Callable[[], Lag | None], refused: Callable[[], int], system: SystemMetrics):
        self.registry = CollectorRegistry()
        self.system = system
        self.registry.register(system)
        self.request_duration = Histogram(
            "paycell_http_request_duration_seconds", "HTTP request duration by route template, method and status",
            ["route", "method", "status"], buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.registry.register(_Admission(latest_lag, refused))

    def observe(self, route: str, method: str, status: int, duration_s: float) -> None:
        self.request_duration.labels(route, method, str(status)).observe(duration_s)

    async def refresh(self, pool: asyncpg.Pool) -> None:
        await self.system.refresh(pool)

    async def close(self) -> None:
        await self.system.close()

    def exposition(self) -> bytes:
        return generate_latest(self.registry) + generate_latest(REGISTRY)
