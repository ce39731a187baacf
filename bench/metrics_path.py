"""What the metrics cost a payment on its path, in a worker's multiprocess mode.

    .venv/bin/python bench/metrics_path.py

Per payment the pipeline does: the web's `paycell_payments_accepted_total` (one counter), the
finishing step's `paycell_payments_finished_total` and `paycell_payment_completion_seconds` (a
counter and a histogram, held until the step returns), and Dramatiq's Prometheus middleware around
each of the 1.75 messages of a payment (before/after process: a gauge up and down, a counter, a
histogram). prometheus-client's multiprocess mode writes each to an mmap'd file under a lock. This
times those calls on the real objects (a fresh PROMETHEUS_MULTIPROC_DIR), in CPU microseconds per
payment (process time, so other work on a shared machine inflates it less than wall time would),
beside a plain dict update for scale.
"""
from __future__ import annotations

import datetime
import os
import sys
import tempfile
import time
import timeit

folder = tempfile.mkdtemp(prefix="paycell-metrics-bench-")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
os.environ["dramatiq_prom_db"] = folder

import dramatiq  # noqa: E402
from dramatiq.middleware.prometheus import Prometheus  # noqa: E402

from paycell.metrics import outcomes  # noqa: E402
from paycell.workflow import Order  # noqa: E402

N = 20_000
MESSAGES_PER_PAYMENT = 1.75


def main() -> None:
    order = Order(payment_order_id="o", payment_id="p", user_id="u", kind="payin", payment_option="card",
                  from_acct="a", to_acct="b", amount_minor=100, currency="USD", payment_order_status="completed",
                  ledger_updated=True, wallet_updated=True, psp="test", psp_reference=None, attempt=0,
                  created_at=datetime.datetime.now(datetime.timezone.utc))
    broker = dramatiq.get_broker()
    prom = Prometheus()
    prom.after_process_boot(broker)
    message = dramatiq.Message(queue_name="payments", actor_name="screen", args=("u", "o"), kwargs={}, options={})

    def pipeline():
        outcomes.accepted("payin")
        with outcomes.counting():
            outcomes.finished(order, "completed", None)

    def middleware():
        prom.before_process_message(broker, message)
        prom.after_process_message(broker, message)

    plain: dict[str, int] = {}

    def baseline():
        plain["x"] = plain.get("x", 0) + 1

    for name, fn, per_payment in (("paycell counters (accepted + finished + completion)", pipeline, 1.0),
                                  ("Dramatiq middleware per message x 1.75", middleware, MESSAGES_PER_PAYMENT),
                                  ("a dict update (scale)", baseline, 1.0)):
        best = min(timeit.repeat(fn, number=N, repeat=5, timer=time.process_time)) / N * 1e6 * per_payment
        print(f"{name:55s} {best:7.1f} us per payment")
    print(f"(best of 5 x {N} calls; Python {sys.version.split()[0]}; multiprocess dir {folder})")


if __name__ == "__main__":
    main()
