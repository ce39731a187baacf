"""The simulator's clock: wall time plus an offset that `POST /_sim/clock` advances, so a test can
let three business days pass (an ACH debit settles, or returns) without waiting for them."""
from __future__ import annotations

import time


class SimClock:
    def __init__(self) -> None:
        self.offset_s = 0.0

    def now_s(self) -> float:
        """Seconds since the epoch, as the simulated provider sees them."""
        return time.time() + self.offset_s

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self.offset_s += seconds
        return self.now_s()

    def reset(self) -> None:
        self.offset_s = 0.0
