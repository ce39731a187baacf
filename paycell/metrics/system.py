"""What the whole system holds now, read from Postgres and Redis when Prometheus scrapes a web
process: the gauges an operator alerts on.

- `paycell_payments_live{state}` and `paycell_payments_live_oldest_age_seconds{state}`: orders in
  each live state and how long the oldest has been there since its payment was accepted (stuck
  payments: `requested` or `psp_submitting` old by minutes is a stall; `requires_action` and
  `psp_pending` wait for customers and banks by design);
- `paycell_payments_needs_attention` and `..._oldest_age_seconds`: orders a human must resolve;
- `paycell_dead_letters_pending`: dead letters not replayed (Postgres keeps every one);
- `paycell_review_queue_items{state}` and `paycell_review_queue_oldest_age_seconds{state}`: open
  and claimed review items;
- `paycell_reconciliation_breaks_pending{kind}`: breaks found and neither fixed nor queued yet;
  `paycell_reconciliation_last_run_age_seconds{kind}`: since the newest finished run of each kind;
- `paycell_breaker_state{connector, state}`: 1 for the state each connector's breaker is in (closed,
  opened, half-opened), 0 for the others, as every process sees it (the breakers live in Redis).
- `paycell_system_metrics_up`: 1 when the last reading succeeded (0: the gauges above are absent).

Every query reads a small set through a partial index (migrations 0012, 0015, 0021, 0022, 0024), never a
whole table. A reading is kept `metrics_db_refresh_ms` so scrapes from several Prometheus servers
cost one reading; every web process exports the same figures (aggregate them with max, not sum).
"""
from __future__ import annotations

import asyncio
import time

import asyncpg
import msgspec
import structlog
from prometheus_client.core import GaugeMetricFamily

from paycell import workflow
from paycell.config import Settings
from paycell.psp import registry
from paycell.psp.breakers import Breakers

log = structlog.get_logger("paycell.metrics")
BREAKER_STATES = ("closed", "opened", "half-opened")
LIVE_PREDICATE = ("payment_order_status NOT IN ('completed', 'failed', 'needs_attention', 'returned', 'reversing', "
                  "'reversed')")


class Reading(msgspec.Struct, frozen=True):
    live: list[tuple[str, int, float]]          # state, orders, oldest age (s)
    needs_attention: tuple[int, float]          # orders, oldest age (s) since they got there
    dead_letters: int
    reviews: list[tuple[str, int, float]]       # state, items, oldest age (s)
    breaks: list[tuple[str, int]]               # kind, pending
    last_runs: list[tuple[str, float]]          # run kind, age (s) of the newest finished
    breakers: dict[str, str]                    # connector -> state


async def read(pool: asyncpg.Pool, breakers: Breakers, connectors: list[str]) -> Reading:
    async with pool.acquire() as conn:
        # The predicate of the partial index payment_order_live, word for word (a parameter would not
        # let the planner use that index); tests/api/test_api_metrics.py checks it names TERMINAL.
        live = await conn.fetch(
            f"""SELECT payment_order_status, count(*), extract(epoch FROM now() - min(created_at))::float8
                  FROM payment_order WHERE {LIVE_PREDICATE} GROUP BY 1""")
        attention = await conn.fetchrow(
            """SELECT count(*), coalesce(extract(epoch FROM now() - min(updated_at)), 0)::float8
                 FROM payment_order WHERE payment_order_status = 'needs_attention'""")
        dead = await conn.fetchval("SELECT count(*) FROM dead_letter WHERE replayed_at IS NULL")
        reviews = await conn.fetch(
            """SELECT state, count(*), extract(epoch FROM now() - min(created_at))::float8
                 FROM review_item WHERE state IN ('open', 'claimed') GROUP BY 1""")
        breaks = await conn.fetch("SELECT kind, count(*) FROM recon_break WHERE disposition = 'found' GROUP BY 1")
        runs = await conn.fetch(
            """SELECT kind, extract(epoch FROM now() - max(finished_at))::float8 FROM recon_run
                WHERE finished_at IS NOT NULL AND started_at > now() - interval '8 days' GROUP BY 1""")
    states = await asyncio.gather(*(breakers.state(c) for c in connectors))
    return Reading(live=[tuple(r) for r in live], needs_attention=tuple(attention), dead_letters=dead,
                   reviews=[tuple(r) for r in reviews], breaks=[tuple(r) for r in breaks],
                   last_runs=[tuple(r) for r in runs], breakers=dict(zip(connectors, states)))


class SystemMetrics:
    """A collector serving the last reading; `refresh` takes a new one when it is older than the
    refresh period (called by the scrape handler before it renders)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._reading: Reading | None = None
        self._read_at = 0.0
        self._up = 0
        self._breakers: Breakers | None = None
        self._lock = asyncio.Lock()
        self._connectors = [c for c in registry.all_names(settings)]

    async def refresh(self, pool: asyncpg.Pool) -> None:
        async with self._lock:
            if time.monotonic() - self._read_at < self.settings.metrics_db_refresh_ms / 1000:
                return
            if self._breakers is None:
                self._breakers = Breakers(self.settings)
            try:
                self._reading = await asyncio.wait_for(read(pool, self._breakers, self._connectors),
                                                       self.settings.readiness_check_timeout_s)
                self._up = 1
            except Exception as exc:  # Postgres, Redis or a timeout: a scrape reports `up 0`, never a 500
                log.warning("metrics.system_unread", error=repr(exc))
                self._reading, self._up = None, 0
            self._read_at = time.monotonic()

    async def close(self) -> None:
        if self._breakers is not None:
            await self._breakers.close()

    def collect(self):
        up = GaugeMetricFamily("paycell_system_metrics_up", "1 when the last reading of Postgres and Redis succeeded")
        up.add_metric([], self._up)
        yield up
        r = self._reading
        if r is None:
            return
        live = GaugeMetricFamily("paycell_payments_live", "orders in each live state", labels=["state"])
        live_age = GaugeMetricFamily("paycell_payments_live_oldest_age_seconds",
                                     "age of the oldest order in each live state, since its payment was accepted",
                                     labels=["state"])
        seen = {state: (n, age) for state, n, age in r.live}
        for state in sorted(workflow.LIVE):
            n, age = seen.get(state, (0, 0.0))
            live.add_metric([state], n)
            live_age.add_metric([state], age)
        yield live
        yield live_age
        yield _gauge("paycell_payments_needs_attention", "orders a human must resolve", r.needs_attention[0])
        yield _gauge("paycell_payments_needs_attention_oldest_age_seconds",
                     "how long the oldest order needing attention has waited", r.needs_attention[1])
        yield _gauge("paycell_dead_letters_pending", "dead-lettered messages not replayed", r.dead_letters)
        items = GaugeMetricFamily("paycell_review_queue_items", "review items open or claimed", labels=["state"])
        oldest = GaugeMetricFamily("paycell_review_queue_oldest_age_seconds", "age of the oldest review item",
                                   labels=["state"])
        seen = {state: (n, age) for state, n, age in r.reviews}
        for state in ("open", "claimed"):
            n, age = seen.get(state, (0, 0.0))
            items.add_metric([state], n)
            oldest.add_metric([state], age)
        yield items
        yield oldest
        breaks = GaugeMetricFamily("paycell_reconciliation_breaks_pending",
                                   "reconciliation breaks found and neither fixed nor queued for review",
                                   labels=["kind"])
        for kind, n in sorted(r.breaks):
            breaks.add_metric([kind], n)
        yield breaks
        runs = GaugeMetricFamily("paycell_reconciliation_last_run_age_seconds",
                                 "time since the newest finished reconciliation run of each kind", labels=["kind"])
        for kind, age in sorted(r.last_runs):
            runs.add_metric([kind], age)
        yield runs
        breakers = GaugeMetricFamily("paycell_breaker_state", "1 for the state each connector's breaker is in",
                                     labels=["connector", "state"])
        for connector, state in sorted(r.breakers.items()):
            for s in BREAKER_STATES:
                breakers.add_metric([connector, s], 1 if s == state else 0)
        yield breakers


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc)
    g.add_metric([], value)
    return g
