"""The admission decision: a new payment is refused while the pipeline's lag passes a bound.

Two bounds (PAYCELL_ADMISSION_LAG_MS_MAX, PAYCELL_ADMISSION_QUEUE_DEPTH_MAX): the age of the oldest
payment message no worker has taken, and the number of them. Past either, `check` raises
PipelineBehind (503, code `pipeline_behind`, Retry-After: the oldest message's age in whole
seconds, at least 1 s and at most the lag bound: a backlog that old takes about that long to go). It is
called before a request reads its body or writes anything, so a refused request leaves no trace.
Reads are never refused; a payment accepted before the backlog grew goes on, and its status is a
GET away (a retried POST of it is refused like a new one until the backlog drains).
"""
from __future__ import annotations

import math
import time

from paycell.admission.lag import Lag
from paycell.errors import PipelineBehind


class Gate:
    def __init__(self, *, lag_ms_max: int, depth_max: int, stale_ms: int, clock=time.monotonic):
        self.lag_ms_max, self.depth_max, self.stale_ms = lag_ms_max, depth_max, stale_ms
        self._clock = clock
        self.refused = 0

    def check(self, lag: Lag | None) -> None:
        if lag is None or (self._clock() - lag.read_at_s) * 1000 > self.stale_ms:
            return  # no recent reading: never refuse on a guess
        if lag.oldest_age_ms <= self.lag_ms_max and lag.depth <= self.depth_max:
            return
        self.refused += 1
        retry_after_s = max(1, min(math.ceil(self.lag_ms_max / 1000), math.ceil(lag.oldest_age_ms / 1000)))
        raise PipelineBehind(f"payments are accepted faster than they are processed (backlog {lag.depth}, "
                             f"oldest waiting {lag.oldest_age_ms} ms): retry in {retry_after_s} s",
                             retry_after_s=retry_after_s)
