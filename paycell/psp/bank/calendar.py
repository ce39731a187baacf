"""The ACH rail's calendar, as the simulator keeps it: business days, the daily cut-off, the
settlement day.

A payment order created before a business day's cut-off goes to the bank in that day's file;
after it (or on a weekend) in the next business day's. Its entries post at `POSTING_TIME_UTC` on
the settlement day, `business_days` business days after the file's day. Weekends are skipped;
bank holidays are not modelled (a real Fed calendar would skip them too).
"""
from __future__ import annotations

import datetime

UTC = datetime.timezone.utc
CUTOFF_TIME_UTC = datetime.time(20, 0)  # 15:00 US Eastern (standard time): the day's last ACH file
POSTING_TIME_UTC = datetime.time(14, 0)  # settled entries post to the accounts
BUSINESS_DAYS_SCAN_MAX = 7  # a cut-off is never further than a weekend away


def is_business_day(day: datetime.date) -> bool:
    return day.weekday() < 5  # Monday..Friday


def add_business_days(day: datetime.date, business_days: int) -> datetime.date:
    assert business_days >= 0, business_days
    while business_days:
        day += datetime.timedelta(days=1)
        if is_business_day(day):
            business_days -= 1
    return day


def _at(day: datetime.date, time_utc: datetime.time) -> float:
    return datetime.datetime.combine(day, time_utc, tzinfo=UTC).timestamp()


def file_day(now_s: float) -> datetime.date:
    """The business day whose cut-off takes a payment order created at `now_s`."""
    day = datetime.datetime.fromtimestamp(now_s, UTC).date()
    for _ in range(BUSINESS_DAYS_SCAN_MAX + 1):
        if is_business_day(day) and now_s < _at(day, CUTOFF_TIME_UTC):
            return day
        day += datetime.timedelta(days=1)
    raise AssertionError("no business day within a week")


def cutoff_s(day: datetime.date) -> float:
    return _at(day, CUTOFF_TIME_UTC)


def settlement_s(day: datetime.date, business_days: int) -> float:
    """When the entries of `day`'s file post: `business_days` (>= 1) business days later."""
    assert business_days >= 1, business_days
    return _at(add_business_days(day, business_days), POSTING_TIME_UTC)


def date_of(t_s: float) -> datetime.date:
    return datetime.datetime.fromtimestamp(t_s, UTC).date()
