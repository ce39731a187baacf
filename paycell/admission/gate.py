"""The admission decision: a new payment is refused while the pipeline's lag passes a bound.

The bound operators set is a time to completion, PAYCELL_ADMISSION_TTC_MS_MAX: how long after its
acceptance an accepted payment may take to finish when the workers are the bottleneck. What the
gate can read cheaply is the age of the oldest payment message no worker has taken (the head of the
queue, paycell/admission/lag.py), and a payment does not wait once: it waits for `screen`, then
for `charge` (and for `settle` when the charge step could not post inline), 1.75 messages per
payment on the payments queue (bench/README.md), each wait about the head's age when the backlog is
steady, and it then spends its processing time and the time in the workers' prefetch buffers
(invisible to the gate). So the gate refuses once the head is older than QUEUE_WAIT_SHARE (30 %) of
the time-to-completion bound: two waits take 60 % and the rest is left to the work. Measured at 2x
the sustainable load in bench/README.md ("Admission control"): with 40 % the p99 came out at 1.09x
the bound on a machine loaded by other work, hence 30 %. A second bound, PAYCELL_ADMISSION_QUEUE_DEPTH_MAX, caps the number of waiting
messages (memory in Redis) whatever their age. Past either, `check` raises
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

# The share of the time-to-completion bound the queue's head may be old before new payments are refused.
QUEUE_WAIT_SHARE = 0.3


def lag_bound_ms(ttc_ms_max: int) -> int:
    """The head-of-queue age past which a payment accepted now would likely miss `ttc_ms_max`."""
    return max(1, int(ttc_ms_max * QUEUE_WAIT_SHARE))


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
