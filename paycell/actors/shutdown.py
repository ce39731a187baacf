"""A worker process stops once per shutdown, however many SIGTERMs it gets.

honcho, systemd and container runtimes send SIGTERM to a whole process group: each Dramatiq worker
process gets it directly, and a moment later again from the Dramatiq main process, which forwards
it to its children. Dramatiq's handler reads a second SIGTERM as "kill now" and raises SystemExit in
the middle of `Worker.stop`: the middleware's shutdown hooks never run, the asyncio event loop
thread (not a daemon) is never stopped, and the process hangs until SIGKILL.

`OneStopSignal` wraps that handler once the process has booted: the first SIGTERM (or SIGHUP)
starts the graceful stop; the ones after it are logged and dropped. The stop itself is bounded by
the worker's `--worker-shutdown-timeout` (PAYCELL_WORKER_SHUTDOWN_TIMEOUT_MS, set by `paycell
worker`): messages still running then are not acknowledged, so Redis hands them to another worker
when this one's heartbeat lapses, and the sweeper re-drives their orders anyway (the order's state
is the truth). SIGKILL stays the way to stop at once.
"""
from __future__ import annotations

import logging
import os
import signal

from dramatiq.middleware import Middleware

# The standard library's logger, not structlog's: a signal handler may run while the thread it
# interrupted holds structlog's (non-reentrant) write lock; logging's handler lock is reentrant and
# each line is one write (paycell/logs.py renders both the same way).
log = logging.getLogger("paycell.worker")
SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class OneStopSignal(Middleware):
    def after_process_boot(self, broker) -> None:
        first_seen: list[int] = []
        previous = {sig: signal.getsignal(sig) for sig in SIGNALS}

        def handler(signum, frame):
            if first_seen:
                log.info("worker.stop_signal_ignored: %s in process %d, already stopping",
                         signal.Signals(signum).name, os.getpid())
                return
            first_seen.append(signum)
            log.info("worker.stopping: %s in process %d", signal.Signals(signum).name, os.getpid())
            original = previous[signum]
            if callable(original):
                original(signum, frame)

        for sig in SIGNALS:
            if callable(previous[sig]):
                signal.signal(sig, handler)
