"""Payments per minute by status, as the geometry of a stacked bar chart that the overview's
template draws as SVG (server-side: the console runs no script)."""
from __future__ import annotations

import datetime

import msgspec

STATUSES = ("succeeded", "processing", "requires_action", "returned", "failed", "needs_attention")
MINUTES = 60
WIDTH, HEIGHT = 720, 180
BAR_GAP = 2


class Bar(msgspec.Struct, frozen=True):
    x: int
    y: float
    width: int
    height: float
    status: str
    minute: str
    n: int


class Chart(msgspec.Struct, frozen=True):
    width: int
    height: int
    bars: list[Bar]
    peak: int                   # the largest total of one minute (the y axis' top)
    totals: dict[str, int]      # per status over the whole window
    first_minute: str
    last_minute: str


def build(rows: list, now: datetime.datetime, minutes: int = MINUTES) -> Chart:
    """`rows`: (minute, status, n) as paycell.store.payments.counts_per_minute returns them."""
    last = now.astimezone(datetime.timezone.utc).replace(second=0, microsecond=0)
    first = last - datetime.timedelta(minutes=minutes - 1)
    counts: dict[tuple[datetime.datetime, str], int] = {}
    for row in rows:
        counts[(row["minute"].astimezone(datetime.timezone.utc), row["status"])] = row["n"]
    per_minute = [first + datetime.timedelta(minutes=i) for i in range(minutes)]
    peak = max([sum(counts.get((m, s), 0) for s in STATUSES) for m in per_minute] + [1])
    slot = WIDTH // minutes
    bars = []
    for i, minute in enumerate(per_minute):
        y = float(HEIGHT)
        for status in STATUSES:
            n = counts.get((minute, status), 0)
            if not n:
                continue
            height = HEIGHT * n / peak
            y -= height
            bars.append(Bar(x=i * slot, y=round(y, 2), width=slot - BAR_GAP, height=round(height, 2), status=status,
                            minute=minute.strftime("%H:%M"), n=n))
    totals = {s: sum(counts.get((m, s), 0) for m in per_minute) for s in STATUSES}
    return Chart(width=slot * minutes, height=HEIGHT, bars=bars, peak=peak, totals=totals,
                 first_minute=first.strftime("%H:%M"), last_minute=last.strftime("%H:%M UTC"))
