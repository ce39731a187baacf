"""What every step needs in a worker process — the asyncpg pool, the PSP
adapters, the broker — opened once per process on Dramatiq's event-loop thread."""
from __future__ import annotations

import contextlib
import os

import asyncpg
import dramatiq
import structlog
from dramatiq.asyncio import get_event_loop_thread

from paycell.config import Settings
from paycell.memory import trim
from paycell.metrics import outcomes
from paycell.psp.base import Psp
from paycell.psp.breakers import Breakers
from paycell.psp.registry import adapter_for
from paycell.risk.engine import RiskEngine
from paycell.risk.scorer import Scorer
from paycell.rules.in_force import RulesInForce, rules_file_text
from paycell.store import payments, risk_totals
from paycell.store.db import create_pool
from paycell.velocity import Velocity
from paycell.workflow import Order

log = structlog.get_logger("paycell.worker")


class Context:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, broker: dramatiq.Broker):
        self.settings = settings
        self.pool = pool
        self.broker = broker
        self._psps: dict[str, Psp] = {}
        self._velocity: Velocity | None = None
        self._breakers: Breakers | None = None
        self._risk: RiskEngine | None = None

    @property
    def velocity(self) -> Velocity:
        """The rate-limit store, opened on first use on the worker's event loop."""
        if self._velocity is None:
            self._velocity = Velocity(self.settings)
        return self._velocity

    @property
    def breakers(self) -> Breakers:
        """The connectors' circuit breakers (state in Redis), opened on first use on the worker's loop."""
        if self._breakers is None:
            self._breakers = Breakers(self.settings)
        return self._breakers

    @property
    def risk(self) -> RiskEngine:
        """The risk engine: the rules and the model in force in this process."""
        if self._risk is None:
            s = self.settings
            self._risk = RiskEngine(RulesInForce(s.risk_reload_s, default_source=rules_file_text(s)),
                                    Scorer(s.risk_reload_s), first_param=risk_totals.EXTRA_FIRST_PARAM)
        return self._risk

    def psp(self, name: str) -> Psp:
        if name not in self._psps:
            self._psps[name] = adapter_for(name, self.settings)
        return self._psps[name]

    async def close(self) -> None:
        for psp in self._psps.values():
            await psp.close()
        if self._velocity is not None:
            await self._velocity.close()
        if self._breakers is not None:
            await self._breakers.close()
        await self.pool.close()


_current: Context | None = None


def current() -> Context:
    if _current is None:
        raise RuntimeError("no worker context: is the StepContext middleware installed?")
    return _current


class StepContext(dramatiq.Middleware):
    """Opens the Context when a worker boots (after AsyncIO started the loop thread)."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def before_worker_boot(self, broker, worker):
        global _current
        try:
            pool = get_event_loop_thread().run_coroutine(create_pool(self.settings))
        except Exception:
            # Dramatiq only logs a middleware's exception and keeps consuming: a worker with no
            # database would fail every message, so stop the process loudly instead.
            log.critical("worker.boot_failed", exc_info=True)
            os._exit(3)
        _current = Context(self.settings, pool, broker)
        trim.start_trimmer(self.settings.malloc_trim_interval_s)  # in each forked worker process
        log.info("worker.booted", pool_size_max=self.settings.db_pool_size_max)

    def after_worker_shutdown(self, broker, worker):
        global _current
        if _current is not None:
            with contextlib.suppress(Exception):
                get_event_loop_thread().run_coroutine(_current.close())
            _current = None


@contextlib.contextmanager
def bound(**values):
    """Bind values (user_id, order_id, payment_id, step) to every log line inside the block, and
    count the payments the block finishes when it returns (paycell/metrics/outcomes.py: not when it
    raises)."""
    with structlog.contextvars.bound_contextvars(**values), outcomes.counting():
        yield


async def order_key(ctx: Context, step: str, ids: tuple[str, ...]) -> tuple[str, str] | None:
    """(user id, order id) of a payment step's message. A message carries (user_id, order_id): no
    query. For one release a step also takes the old one-id form (a message sent before the deploy,
    or its dead letter replayed from the broker), whose owner is looked up (payments.order_key: a
    multi-shard query on Citus, on this path only). None when no order answers: the step does nothing."""
    if len(ids) == 2:
        return ids[0], ids[1]
    async with ctx.pool.acquire() as conn:
        key = await payments.order_key(conn, ids)
    if key is None:
        log.warning("step.no_such_order", step=step, ids=list(ids))
    else:
        log.info("step.old_message_form", step=step, user_id=key[0], order_id=key[1])
    return key


async def lock_order_in(conn, user_id: str, order_id: str,
                        states: tuple[str, ...] | frozenset[str]) -> Order | None:
    """The order locked FOR UPDATE when it is in one of `states`; else None (a duplicate or late
    message: the step does nothing). Binds the payment id to the step's log lines."""
    return in_states(await payments.lock_order(conn, user_id, order_id), states)


def in_states(order: Order | None, states: tuple[str, ...] | frozenset[str]) -> Order | None:
    """`order` (locked by the caller) when it is in one of `states`, as lock_order_in says."""
    if order is None or order.payment_order_status not in states:
        log.info("step.skipped", state=order and order.payment_order_status)
        return None
    structlog.contextvars.bind_contextvars(payment_id=order.payment_id)
    return order
