"""The pipeline's counters: payments accepted, and payments finished per kind, connector, status
and failure code, with their time to completion.

The web process counts what it accepts; a finished payment is counted by the process whose step
moved its order to a terminal state (paycell/store/payments.py `move` calls `finished`). A step
runs inside `counting()` (paycell/actors/context.py `bound`), which holds what its moves finished
until the step returns: a step that raises (its transaction rolled back, the message is retried)
counts nothing, so a retried step cannot count a payment twice. A move outside a step (an
operator's decision in the web process) is counted at once.

In a worker, these live in prometheus_client's default registry; `paycell worker` points
prometheus_client's multiprocess mode at a folder of its own before any process starts, so every
worker process writes them there and the exposition server of Dramatiq's Prometheus middleware
serves them with Dramatiq's own step metrics (paycell/metrics/worker.py). Label values are
bounded: a kind and a status from the workflow table, a registered connector name, and a failure
code that is a short snake_case word (anything else counts as `other`).
"""
from __future__ import annotations

import contextlib
import contextvars
import datetime
import re

from prometheus_client import Counter, Histogram

from paycell.workflow import Order

# Seconds from acceptance to a terminal state: cards finish in well under a second, bank rails in days.
COMPLETION_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3_600.0, 86_400.0, 604_800.0)
_CODE = re.compile(r"[a-z0-9_]{1,40}")

ACCEPTED = Counter("paycell_payments_accepted", "payments accepted by the API (replays of a key not counted)",
                   ["kind"])
FINISHED = Counter("paycell_payments_finished",
                   "payments whose order reached a terminal state (completed, failed, returned, needs_attention)",
                   ["kind", "connector", "status", "code"])
COMPLETION = Histogram("paycell_payment_completion_seconds",
                       "time from a payment's acceptance to its order's terminal state",
                       ["kind", "status"], buckets=COMPLETION_BUCKETS_S)

_held: contextvars.ContextVar[list | None] = contextvars.ContextVar("paycell_finished_held", default=None)


def code_label(code: str | None) -> str:
    if not code:
        return ""
    return code if _CODE.fullmatch(code) else "other"


def accepted(kind: str) -> None:
    ACCEPTED.labels(kind).inc()


def finished(order: Order, status: str, failure_code: str | None) -> None:
    """`order` moved to terminal state `status` (in a transaction not yet committed)."""
    age_s = None
    if order.created_at is not None:
        age_s = max(0.0, (datetime.datetime.now(datetime.timezone.utc) - order.created_at).total_seconds())
    item = (order.kind, order.psp or "none", status, code_label(failure_code), age_s)
    held = _held.get()
    if held is None:
        _count(item)
    else:
        held.append(item)


def _count(item) -> None:
    kind, connector, status, code, age_s = item
    FINISHED.labels(kind, connector, status, code).inc()
    if age_s is not None:
        COMPLETION.labels(kind, status).observe(age_s)


@contextlib.contextmanager
def counting():
    """Hold what the block finishes; count it when the block returns, drop it when it raises."""
    held: list = []
    token = _held.set(held)
    try:
        yield
    finally:
        _held.reset(token)
    # Reached only when the block did not raise.
    for item in held:
        _count(item)
