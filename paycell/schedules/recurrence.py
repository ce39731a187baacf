"""Recurrences: an RFC 5545 RRULE (or a preset) anchored at a local start in an IANA time zone,
and the instants its occurrences fall on.

Occurrences of daily and coarser rules are computed in local wall time (python-dateutil's rrule
over naive local date-times) and then placed in the zone (zoneinfo): a 09:00 rule stays at 09:00
across DST. A local time that does not exist (the spring-forward gap) runs at the same distance
past the gap's start (02:30 becomes 03:30); a local time that happens twice (fall back) runs once,
at its first instant (fold=0). Hourly and minutely rules count elapsed time instead (they are
computed in UTC from the start's instant): every hour means 60 minutes, so a DST change neither
skips nor doubles a run. Two local occurrences that land on one instant run once.

A day of the month past the month's end falls on the month's last day (monthly on the 31st runs
on Feb 28 or 29, Apr 30 ...; yearly on Feb 29 runs on Feb 28 in common years): RFC 5545 would
skip those months, which no one paying rent wants.

Only rules whose every period holds an occurrence are accepted (dateutil searches up to year 9999
for a rule that can never occur: seconds of CPU per request). So BYxxx parts that could only
filter periods out are refused with the frequencies where they could (see `_check_parts`), and
BYSETPOS is 1 or -1. A refused rule is a RecurrenceInvalid naming the part and its position.
"""
from __future__ import annotations

import datetime
import itertools
import re
import zoneinfo
from collections.abc import Iterator

import msgspec
from dateutil import rrule

from paycell.errors import Unprocessable

PRESETS = {"hourly": "FREQ=HOURLY", "daily": "FREQ=DAILY", "weekly": "FREQ=WEEKLY", "monthly": "FREQ=MONTHLY"}
FREQUENCIES = ("MINUTELY", "HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY")
ELAPSED_TIME = frozenset({"MINUTELY", "HOURLY"})  # computed in UTC
RULE_CHARS_MAX = 300
INTERVAL_MAX = 1_000
COUNT_MAX = 100_000
# The minimum-interval check looks at this many first occurrences (every accepted rule repeats its
# pattern within a year of occurrences at most; a year of hourly runs is 8,760).
GAP_SAMPLE = 2_000
ANCHOR_MARGIN = datetime.timedelta(days=2)
_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_UTC = datetime.timezone.utc
_PART = re.compile(r"([A-Z]+)=([A-Z0-9,+-]+)")
_NUMBERED_DAY = re.compile(r"([+-]?[0-9]{1,2})?(MO|TU|WE|TH|FR|SA|SU)")
_UNTIL = re.compile(r"([0-9]{8})(T([0-9]{6})(Z)?)?")


class RecurrenceInvalid(Unprocessable):
    """A recurrence that does not parse or that paycell refuses: the message says where."""

    def __init__(self, message: str, *, code: str = "recurrence_invalid", field: str = "recurrence"):
        super().__init__(message, code=code, field=field)


class Rule(msgspec.Struct, frozen=True):
    """A parsed RRULE without its end: FREQ and the other parts (name -> value text), canonical."""
    freq: str
    parts: dict[str, str]

    def text(self) -> str:
        return ";".join([f"FREQ={self.freq}", *(f"{k}={v}" for k, v in self.parts.items())])


class End(msgspec.Struct, frozen=True):
    count: int | None = None
    until_local: datetime.datetime | None = None  # naive, in the schedule's zone, inclusive


def parse(text: str) -> tuple[Rule, End]:
    """A preset name or an RRULE (optionally `RRULE:`-prefixed) -> its rule and the COUNT/UNTIL it
    names; RecurrenceInvalid saying at which character and part it went wrong."""
    if not isinstance(text, str) or not text.strip():
        raise RecurrenceInvalid("recurrence is empty; give an RRULE such as FREQ=MONTHLY;BYMONTHDAY=1 or one "
                                f"of {', '.join(PRESETS)}")
    if len(text) > RULE_CHARS_MAX:
        raise RecurrenceInvalid(f"recurrence is longer than {RULE_CHARS_MAX} characters")
    if text.strip().lower() in PRESETS:
        return Rule(PRESETS[text.strip().lower()][5:], {}), End()
    body = text.strip()
    offset = len(text) - len(text.lstrip())
    if body.upper().startswith("RRULE:"):
        body, offset = body[6:], offset + 6
    parts: dict[str, str] = {}
    position = offset
    for chunk in body.split(";"):
        match = _PART.fullmatch(chunk.upper())
        where = f"at character {position + 1} ({chunk[:40]!r})"
        if match is None:
            raise RecurrenceInvalid(f"{where}: expected NAME=VALUE, such as FREQ=WEEKLY")
        name, value = match.groups()
        if name in parts:
            raise RecurrenceInvalid(f"{where}: {name} is given twice")
        parts[name] = value
        _check_value(name, value, where)
        position += len(chunk) + 1
    freq = parts.pop("FREQ", None)
    if freq is None:
        raise RecurrenceInvalid("FREQ is missing (RFC 5545 requires it), e.g. FREQ=DAILY")
    end = End(count=int(parts.pop("COUNT")) if "COUNT" in parts else None,
              until_local=_until(parts.pop("UNTIL")) if "UNTIL" in parts else None)
    if end.count is not None and end.until_local is not None:
        raise RecurrenceInvalid("COUNT and UNTIL are both given; RFC 5545 allows one of them")
    rule = Rule(freq, dict(sorted(parts.items())))
    _check_parts(rule)
    return rule, end


def _check_value(name: str, value: str, where: str) -> None:
    items = value.split(",")
    if name == "FREQ":
        if value not in FREQUENCIES:
            raise RecurrenceInvalid(f"{where}: FREQ must be one of {', '.join(FREQUENCIES)} (SECONDLY is refused)")
    elif name in ("INTERVAL", "COUNT"):
        top = INTERVAL_MAX if name == "INTERVAL" else COUNT_MAX
        if not value.isdigit() or not 1 <= int(value) <= top:
            raise RecurrenceInvalid(f"{where}: {name} must be an integer from 1 to {top}")
    elif name == "UNTIL":
        if _UNTIL.fullmatch(value) is None:
            raise RecurrenceInvalid(f"{where}: UNTIL must be a date (20261231) or date-time (20261231T235959)")
    elif name == "WKST":
        if value not in _WEEKDAYS:
            raise RecurrenceInvalid(f"{where}: WKST must be one of {', '.join(_WEEKDAYS)}")
    elif name == "BYDAY":
        for item in items:
            m = _NUMBERED_DAY.fullmatch(item)
            if m is None or (m[1] is not None and not 1 <= abs(int(m[1])) <= 53):
                raise RecurrenceInvalid(f"{where}: BYDAY takes weekdays (MO..SU), optionally numbered (1FR, -1MO)")
    elif name in ("BYMONTH", "BYMONTHDAY", "BYHOUR", "BYMINUTE", "BYSETPOS"):
        low, high, signed = {"BYMONTH": (1, 12, False), "BYMONTHDAY": (1, 31, True), "BYHOUR": (0, 23, False),
                             "BYMINUTE": (0, 59, False), "BYSETPOS": (1, 1, True)}[name]
        for item in items:
            ok = re.fullmatch(r"[+-]?[0-9]{1,2}", item) is not None
            number = int(item) if ok else None
            if not ok or not (low <= number <= high or (signed and -high <= number <= -max(low, 1))):
                span = "1 or -1" if name == "BYSETPOS" else f"{low}..{high}" + (f" or -{high}..-1" if signed else "")
                raise RecurrenceInvalid(f"{where}: {name} takes {span}, comma-separated")
    else:
        raise RecurrenceInvalid(f"{where}: {name} is not supported; use FREQ, INTERVAL, COUNT, UNTIL, BYDAY, "
                                "BYMONTHDAY, BYMONTH, BYHOUR, BYMINUTE, BYSETPOS, WKST")


# The BYxxx parts each frequency accepts: those that expand a period (or, for BYDAY with a daily
# rule of interval 1, filter days of a week that always holds them).
_ALLOWED = {
    "MINUTELY": {"INTERVAL", "WKST"},
    "HOURLY": {"INTERVAL", "BYMINUTE", "WKST"},
    "DAILY": {"INTERVAL", "BYHOUR", "BYMINUTE", "BYDAY", "WKST"},
    "WEEKLY": {"INTERVAL", "BYHOUR", "BYMINUTE", "BYDAY", "BYSETPOS", "WKST"},
    "MONTHLY": {"INTERVAL", "BYHOUR", "BYMINUTE", "BYDAY", "BYMONTHDAY", "BYSETPOS", "WKST"},
    "YEARLY": {"INTERVAL", "BYHOUR", "BYMINUTE", "BYDAY", "BYMONTHDAY", "BYMONTH", "BYSETPOS", "WKST"},
}


def _check_parts(rule: Rule) -> None:
    parts = rule.parts
    for name in parts:
        if name not in _ALLOWED[rule.freq]:
            raise RecurrenceInvalid(f"{name} is not supported with FREQ={rule.freq}: it could leave periods "
                                    "without an occurrence")
    interval = int(parts.get("INTERVAL", "1"))
    days = parts.get("BYDAY", "").split(",") if "BYDAY" in parts else []
    numbered = [d for d in days if _NUMBERED_DAY.fullmatch(d)[1] is not None]
    if rule.freq == "DAILY" and days and interval > 1:
        raise RecurrenceInvalid("BYDAY with FREQ=DAILY needs INTERVAL=1 (use FREQ=WEEKLY;INTERVAL=n;BYDAY=...)")
    if numbered and rule.freq in ("DAILY", "WEEKLY"):
        raise RecurrenceInvalid(f"numbered BYDAY ({numbered[0]}) needs FREQ=MONTHLY or FREQ=YEARLY")
    limit = 52 if rule.freq == "YEARLY" and "BYMONTH" not in parts else 4
    for d in numbered:
        if abs(int(_NUMBERED_DAY.fullmatch(d)[1])) > limit:
            raise RecurrenceInvalid(f"BYDAY={d}: with FREQ={rule.freq} a numbered weekday goes from -{limit} to "
                                    f"{limit} (not every period has a {d})")
    if days and "BYMONTHDAY" in parts:
        raise RecurrenceInvalid("BYDAY together with BYMONTHDAY is not supported (it can leave months empty)")
    if "BYSETPOS" in parts and not (days or "BYMONTHDAY" in parts):
        raise RecurrenceInvalid("BYSETPOS needs BYDAY or BYMONTHDAY to pick from")
    month_days = [int(d) for d in parts.get("BYMONTHDAY", "").split(",") if d]
    if "BYSETPOS" in parts and any(d > 28 for d in month_days):
        raise RecurrenceInvalid("BYSETPOS with BYMONTHDAY above 28 is not supported (those days fall on the "
                                "month's last day already)")
    if len(month_days) > 1 and any(d in (29, 30) for d in month_days):
        raise RecurrenceInvalid("BYMONTHDAY=29 or 30 must be alone (it falls on the month's last day in shorter "
                                "months); use -1 for the last day in a list")


def _until(value: str) -> datetime.datetime:
    m = _UNTIL.fullmatch(value)
    try:
        day = datetime.datetime.strptime(m[1], "%Y%m%d")
        if m[3] is None:
            return day.replace(hour=23, minute=59, second=59)
        return datetime.datetime.strptime(m[1] + m[3], "%Y%m%d%H%M%S")
    except ValueError:
        raise RecurrenceInvalid(f"UNTIL={value} is not a valid date") from None


def zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA zone `name`, or a 422 naming `time_zone`."""
    try:
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_+./-]{1,60}", name) or ".." in name:
            raise ValueError(name)
        return zoneinfo.ZoneInfo(name)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        raise Unprocessable(f"time_zone {str(name)[:60]!r} is not an IANA time zone (e.g. Europe/Paris)",
                            code="time_zone_invalid", field="time_zone") from None


class Recurrence:
    """A rule anchored at `start_local` (naive, in `tz`) with its end: the instants it falls on."""

    def __init__(self, rule: Rule, tz: zoneinfo.ZoneInfo, start_local: datetime.datetime, end: End = End()):
        self.rule, self.tz, self.start_local, self.end = rule, tz, start_local, end
        self._elapsed = rule.freq in ELAPSED_TIME
        self._until_utc = None if end.until_local is None else to_utc(end.until_local, tz)
        self._parts = _parts(rule, self._anchor())
        self._rrule = _rrule(*self._parts, self._anchor())

    def _anchor(self) -> datetime.datetime:
        if self._elapsed:
            return to_utc(self.start_local, self.tz).replace(tzinfo=None)
        return self.start_local

    def _instant(self, naive: datetime.datetime) -> datetime.datetime:
        return naive.replace(tzinfo=_UTC) if self._elapsed else to_utc(naive, self.tz)

    def __iter__(self) -> Iterator[tuple[int, datetime.datetime]]:
        """(1-based number, UTC instant) of every occurrence from the start, in order, until the end."""
        last = None
        number = 0
        for naive in self._rrule:
            at = self._instant(naive)
            if last is not None and at <= last:  # two local times on one instant (DST gap)
                continue
            if self._until_utc is not None and at > self._until_utc:
                return
            number += 1
            if self.end.count is not None and number > self.end.count:
                return
            last = at
            yield number, at

    def _after(self, instant: datetime.datetime) -> Iterator[datetime.datetime]:
        """Every occurrence strictly after `instant`, in order. Without a COUNT (which numbers
        occurrences from the start) the rule is taken up from the start of the period, in phase with
        the start, that begins at least two days before `instant` (every part dateutil would read
        from the start is written out, so any period start anchors it the same): a schedule running
        for years costs a few periods per computation, not all of them."""
        anchor = self._anchor()
        naive = instant.astimezone(_UTC if self._elapsed else self.tz).replace(tzinfo=None)
        target = naive - ANCHOR_MARGIN  # the naive time of an instant differs from its rule time by a DST shift
        if self.end.count is not None or target <= anchor:
            yield from (at for _, at in self if at > instant)
            return
        freq, parts = self._parts
        anchor = max(anchor, period_start(freq, int(parts.get("INTERVAL", "1")), parts.get("WKST", "MO"), anchor,
                                          target))
        last = None
        for naive_at in _rrule(freq, parts, anchor):
            at = self._instant(naive_at)
            if last is not None and at <= last:
                continue
            if self._until_utc is not None and at > self._until_utc:
                return
            last = at
            if at > instant:
                yield at

    def after(self, instant: datetime.datetime, limit: int) -> list[datetime.datetime]:
        """Up to `limit` occurrences strictly after `instant` (UTC)."""
        return list(itertools.islice(self._after(instant), limit))

    def until(self, after: datetime.datetime, upto: datetime.datetime) -> tuple[list[datetime.datetime],
                                                                              datetime.datetime | None]:
        """The occurrences in (after, upto], and the first one after `upto` (None: the rule has ended)."""
        found: list[datetime.datetime] = []
        for at in self._after(after):
            if at > upto:
                return found, at
            found.append(at)
        return found, None

    def shortest_gap_s(self) -> float | None:
        """The shortest time between two of the first GAP_SAMPLE occurrences (None: fewer than two)."""
        times = [at for _, at in itertools.islice(self, GAP_SAMPLE)]
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
        return min(gaps) if gaps else None


def to_utc(local: datetime.datetime, tz: zoneinfo.ZoneInfo) -> datetime.datetime:
    """A naive local time in `tz` as a UTC instant: fold=0 (the first of a repeated time; a time
    in a gap is read with the offset before it, i.e. moved forward by the gap)."""
    return local.replace(tzinfo=tz, fold=0).astimezone(_UTC)


def _parts(rule: Rule, start: datetime.datetime) -> tuple[str, dict[str, str]]:
    """(FREQ, the other parts) as dateutil is given them: every part it would take from the start
    written out, days past a month's end clamped."""
    parts = _explicit(rule, start)
    month_days = [int(d) for d in parts.get("BYMONTHDAY", "").split(",") if d]
    if rule.freq in ("MONTHLY", "YEARLY") and month_days:
        parts = _clamped(rule.freq, parts, month_days, start.month)
    return parts.pop("FREQ", rule.freq), parts


def _rrule(freq: str, parts: dict[str, str], dtstart: datetime.datetime) -> rrule.rrule:
    text = ";".join([f"FREQ={freq}", *(f"{k}={v}" for k, v in parts.items())])
    return rrule.rrulestr(text, dtstart=dtstart.replace(microsecond=0))


def _explicit(rule: Rule, start: datetime.datetime) -> dict[str, str]:
    """The parts dateutil would take from the start (day, month, weekday, time of day), written out:
    the clamp below rewrites the days, and a rule anchored at a later period start means the same."""
    parts = dict(rule.parts)
    if rule.freq == "MONTHLY" and "BYDAY" not in parts and "BYMONTHDAY" not in parts:
        parts["BYMONTHDAY"] = str(start.day)
    if rule.freq == "YEARLY" and "BYDAY" not in parts and "BYMONTHDAY" not in parts:
        parts["BYMONTHDAY"] = str(start.day)
        parts.setdefault("BYMONTH", str(start.month))
    if rule.freq == "WEEKLY":
        parts.setdefault("BYDAY", _WEEKDAYS[start.weekday()])
    if rule.freq not in ELAPSED_TIME:
        parts.setdefault("BYHOUR", str(start.hour))
    if rule.freq != "MINUTELY":
        parts.setdefault("BYMINUTE", str(start.minute))
    parts.setdefault("BYSECOND", str(start.second))
    return parts


def period_start(freq: str, interval: int, wkst: str, start: datetime.datetime,
                 target: datetime.datetime) -> datetime.datetime:
    """The start of the latest period of the rule (every `interval` periods from the start's) that
    begins at or before `target`; all naive, in the rule's time."""
    if freq in ELAPSED_TIME:
        unit = datetime.timedelta(minutes=1 if freq == "MINUTELY" else 60)
        base = start.replace(second=0) if freq == "MINUTELY" else start.replace(minute=0, second=0)
        return base + unit * ((target - base) // unit // interval * interval)
    day0 = datetime.datetime.combine(start.date(), datetime.time())
    if freq == "DAILY":
        return day0 + datetime.timedelta(days=(target.date() - start.date()).days // interval * interval)
    if freq == "WEEKLY":
        week0 = day0 - datetime.timedelta(days=(start.weekday() - _WEEKDAYS.index(wkst)) % 7)
        return week0 + datetime.timedelta(weeks=(target - week0).days // 7 // interval * interval)
    if freq == "MONTHLY":
        months = (target.year - start.year) * 12 + target.month - start.month
        m = months // interval * interval + start.month - 1
        return datetime.datetime(start.year + m // 12, m % 12 + 1, 1)
    return datetime.datetime(start.year + (target.year - start.year) // interval * interval, 1, 1)


def _clamped(freq: str, parts: dict[str, str], month_days: list[int], start_month: int) -> dict[str, str]:
    """Days 29-31 on each month's last day when it is shorter. 31 is the last day (-1); a lone 29 or
    30 becomes "the last of 28..d" (BYSETPOS=-1), per month. A yearly rule is the monthly rule of
    its months (interval 1), or of its one month every 12*n months."""
    parts = {**parts, "BYMONTHDAY": ",".join("-1" if d == 31 else str(d) for d in month_days)}
    lone = month_days[0] if len(month_days) == 1 and month_days[0] in (29, 30) else None
    if lone is None:
        return parts
    parts["BYMONTHDAY"] = ",".join(str(d) for d in range(28, lone + 1))
    parts["BYSETPOS"] = "-1"
    if freq == "YEARLY":
        interval = int(parts.pop("INTERVAL", "1"))
        months = parts.get("BYMONTH", "").split(",")
        if interval > 1 and months != [str(start_month)]:
            raise RecurrenceInvalid("FREQ=YEARLY with INTERVAL above 1 and BYMONTHDAY=29 or 30 needs BYMONTH to "
                                    "be the start's month alone")
        parts["FREQ"] = "MONTHLY"
        if interval > 1:
            parts["INTERVAL"] = str(12 * interval)
            parts.pop("BYMONTH")
    return parts

