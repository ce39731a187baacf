"""Recurrences as the schedule clock computes them: every form, in a time zone, across DST both
ways, month ends, leap day, ends by count and by date, and rules that are refused (no database)."""
from __future__ import annotations

import datetime as dt
import itertools
import random

import pytest

from paycell.schedules import recurrence

UTC = dt.timezone.utc


def local_times(text: str, start: dt.datetime, tz: str = "Europe/Paris", n: int = 6) -> list[str]:
    rule, end = recurrence.parse(text)
    rec = recurrence.Recurrence(rule, recurrence.zone(tz), start, end)
    return [at.astimezone(rec.tz).strftime("%Y-%m-%d %H:%M %Z") for at in rec.after(dt.datetime(2000, 1, 1, tzinfo=UTC), n)]


def test_the_presets_repeat_the_start_hourly_daily_weekly_and_monthly():
    start = dt.datetime(2027, 1, 4, 9, 15)  # a Monday
    assert local_times("hourly", start, n=3) == ["2027-01-04 09:15 CET", "2027-01-04 10:15 CET", "2027-01-04 11:15 CET"]
    assert local_times("daily", start, n=2) == ["2027-01-04 09:15 CET", "2027-01-05 09:15 CET"]
    assert local_times("WEEKLY", start, n=2) == ["2027-01-04 09:15 CET", "2027-01-11 09:15 CET"]
    assert local_times("Monthly", start, n=2) == ["2027-01-04 09:15 CET", "2027-02-04 09:15 CET"]


@pytest.mark.parametrize("text, start, expected", [
    ("FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH", dt.datetime(2027, 1, 4, 9),
     ["2027-01-04 09:00 CET", "2027-01-07 09:00 CET", "2027-01-18 09:00 CET", "2027-01-21 09:00 CET"]),
    ("FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1", dt.datetime(2027, 1, 1, 17),
     ["2027-01-29 17:00 CET", "2027-02-26 17:00 CET", "2027-03-31 17:00 CEST", "2027-04-30 17:00 CEST"]),
    ("FREQ=MONTHLY;BYDAY=2TU", dt.datetime(2027, 1, 1, 8),
     ["2027-01-12 08:00 CET", "2027-02-09 08:00 CET", "2027-03-09 08:00 CET", "2027-04-13 08:00 CEST"]),
    ("FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9,17;BYMINUTE=30", dt.datetime(2027, 1, 8, 0),
     ["2027-01-08 09:30 CET", "2027-01-08 17:30 CET", "2027-01-11 09:30 CET", "2027-01-11 17:30 CET"]),
    ("FREQ=YEARLY;BYMONTH=1,7;BYMONTHDAY=15", dt.datetime(2027, 1, 1, 12),
     ["2027-01-15 12:00 CET", "2027-07-15 12:00 CEST", "2028-01-15 12:00 CET", "2028-07-15 12:00 CEST"]),
    ("RRULE:FREQ=HOURLY;INTERVAL=6", dt.datetime(2027, 1, 1, 0),
     ["2027-01-01 00:00 CET", "2027-01-01 06:00 CET", "2027-01-01 12:00 CET", "2027-01-01 18:00 CET"]),
    ("FREQ=MINUTELY;INTERVAL=90", dt.datetime(2027, 1, 1, 0),
     ["2027-01-01 00:00 CET", "2027-01-01 01:30 CET", "2027-01-01 03:00 CET", "2027-01-01 04:30 CET"]),
])
def test_every_recurrence_form(text, start, expected):
    assert local_times(text, start, n=len(expected)) == expected


def test_monthly_on_the_31st_falls_on_each_months_last_day():
    assert local_times("FREQ=MONTHLY;BYMONTHDAY=31", dt.datetime(2027, 1, 31, 9), n=5) == [
        "2027-01-31 09:00 CET", "2027-02-28 09:00 CET", "2027-03-31 09:00 CEST", "2027-04-30 09:00 CEST",
        "2027-05-31 09:00 CEST"]
    # The start's day is the rule's day when the rule names none.
    assert local_times("monthly", dt.datetime(2027, 10, 31, 9), n=3) == [
        "2027-10-31 09:00 CET", "2027-11-30 09:00 CET", "2027-12-31 09:00 CET"]
    assert local_times("FREQ=MONTHLY;BYMONTHDAY=30", dt.datetime(2028, 1, 30, 9), n=3) == [
        "2028-01-30 09:00 CET", "2028-02-29 09:00 CET", "2028-03-30 09:00 CEST"]


def test_a_leap_day_schedule_runs_on_feb_28_in_common_years_and_feb_29_in_leap_years():
    assert local_times("FREQ=YEARLY", dt.datetime(2028, 2, 29, 9), n=5) == [
        "2028-02-29 09:00 CET", "2029-02-28 09:00 CET", "2030-02-28 09:00 CET", "2031-02-28 09:00 CET",
        "2032-02-29 09:00 CET"]
    assert local_times("FREQ=MONTHLY;BYMONTHDAY=29", dt.datetime(2027, 1, 29, 9), n=3)[1] == "2027-02-28 09:00 CET"
    assert local_times("FREQ=MONTHLY;BYMONTHDAY=29", dt.datetime(2028, 1, 29, 9), n=3)[1] == "2028-02-29 09:00 CET"


def test_a_daily_local_time_run_survives_spring_forward_and_fall_back():
    # 2027-03-28 02:30 does not exist in Paris: it runs at 03:30 CEST, once.
    spring = local_times("daily", dt.datetime(2027, 3, 27, 2, 30), n=3)
    assert spring == ["2027-03-27 02:30 CET", "2027-03-28 03:30 CEST", "2027-03-29 02:30 CEST"]
    # 2027-10-31 02:30 happens twice: it runs once, at the first.
    fall = local_times("daily", dt.datetime(2027, 10, 30, 2, 30), n=3)
    assert fall == ["2027-10-30 02:30 CEST", "2027-10-31 02:30 CEST", "2027-11-01 02:30 CET"]
    # 09:00 stays 09:00 on both sides (a 23 h day, then a 25 h day).
    assert local_times("daily", dt.datetime(2027, 3, 27, 9), tz="America/New_York", n=1) == ["2027-03-27 09:00 EDT"]


def test_an_hourly_rule_counts_elapsed_time_so_dst_neither_skips_nor_doubles_a_run():
    spring = recurrence.Recurrence(*_rule("hourly"), start_local=dt.datetime(2027, 3, 28, 0, 30))
    fall = recurrence.Recurrence(*_rule("hourly"), start_local=dt.datetime(2027, 10, 31, 0, 30))
    for rec in (spring, fall):
        times = rec.after(dt.datetime(2000, 1, 1, tzinfo=UTC), 6)
        gaps = {(b - a).total_seconds() for a, b in zip(times, times[1:])}
        assert gaps == {3600.0}
        assert len(set(times)) == 6


def _rule(text: str, tz: str = "Europe/Paris"):
    rule, _ = recurrence.parse(text)
    return rule, recurrence.zone(tz)


def test_two_local_times_on_one_instant_run_once():
    # 02:00 (in the gap) and 03:00 are one instant on spring-forward day.
    times = local_times("FREQ=DAILY;BYHOUR=2,3;BYMINUTE=0", dt.datetime(2027, 3, 28, 0), n=3)
    assert times == ["2027-03-28 03:00 CEST", "2027-03-29 02:00 CEST", "2027-03-29 03:00 CEST"]


def test_a_schedule_ends_by_count_and_by_date():
    assert len(local_times("FREQ=DAILY;COUNT=3", dt.datetime(2027, 1, 1, 9), n=10)) == 3
    assert local_times("FREQ=DAILY;UNTIL=20270103", dt.datetime(2027, 1, 1, 9), n=10)[-1] == "2027-01-03 09:00 CET"
    rule, _ = recurrence.parse("weekly")
    by_count = recurrence.Recurrence(rule, recurrence.zone("Asia/Tokyo"), dt.datetime(2027, 1, 1, 9),
                                     recurrence.End(count=2))
    assert len(by_count.after(dt.datetime(2000, 1, 1, tzinfo=UTC), 10)) == 2
    by_date = recurrence.Recurrence(rule, recurrence.zone("Asia/Tokyo"), dt.datetime(2027, 1, 1, 9),
                                    recurrence.End(until_local=dt.datetime(2027, 1, 15, 9)))
    assert [t.day for t in by_date.after(dt.datetime(2000, 1, 1, tzinfo=UTC), 10)] == [1, 8, 15]
    # A count counts from the start, also the occurrences already behind.
    assert by_count.after(dt.datetime(2027, 1, 5, tzinfo=UTC), 10) == [dt.datetime(2027, 1, 8, 0, tzinfo=UTC)]


def test_until_between_returns_the_missed_occurrences_and_the_next_one():
    rule, tz = _rule("daily")
    rec = recurrence.Recurrence(rule, tz, dt.datetime(2027, 1, 1, 9))
    first = dt.datetime(2027, 1, 1, 8, tzinfo=UTC)
    missed, following = rec.until(after=first, upto=dt.datetime(2027, 1, 4, 12, tzinfo=UTC))
    assert [t.day for t in missed] == [2, 3, 4]
    assert following == dt.datetime(2027, 1, 5, 8, tzinfo=UTC)


@pytest.mark.parametrize("text, says", [
    ("", "empty"),
    ("FREQ=SECONDLY", "at character 1"),
    ("FREQ=DAILY;INTERVAL=0", "at character 12"),
    ("FREQ=DAILY;;BYHOUR=9", "at character 12"),
    ("FREQ=WEEKLY;BYDAY=XX", "at character 13"),
    ("FREQ=DAILY;BYHOUR=24", "at character 12"),
    ("FREQ=DAILY;FREQ=WEEKLY", "given twice"),
    ("BYDAY=MO", "FREQ is missing"),
    ("FREQ=DAILY;RDATE=20270101", "RDATE is not supported"),
    ("FREQ=DAILY;COUNT=2;UNTIL=20271231", "COUNT and UNTIL"),
    ("FREQ=DAILY;UNTIL=20270231", "not a valid date"),
    ("FREQ=DAILY;BYMONTH=2", "could leave periods"),
    ("FREQ=MONTHLY;INTERVAL=12;BYMONTH=2", "could leave periods"),
    ("FREQ=HOURLY;INTERVAL=6;BYHOUR=1", "could leave periods"),
    ("FREQ=DAILY;INTERVAL=7;BYDAY=TU", "INTERVAL=1"),
    ("FREQ=MONTHLY;BYDAY=5FR", "from -4 to 4"),
    ("FREQ=MONTHLY;BYDAY=FR;BYMONTHDAY=13", "BYDAY together with BYMONTHDAY"),
    ("FREQ=MONTHLY;BYDAY=FR;BYSETPOS=6", "BYSETPOS takes 1 or -1"),
    ("FREQ=MONTHLY;BYMONTHDAY=1,30", "must be alone"),
    ("weekly please", "at character 1"),
])
def test_a_rule_that_does_not_parse_or_could_never_run_is_refused_saying_where(text, says):
    with pytest.raises(recurrence.RecurrenceInvalid) as refused:
        recurrence.parse(text)
    assert says in refused.value.message
    assert refused.value.http_status == 422 and refused.value.field == "recurrence"


def test_an_unknown_time_zone_is_refused():
    for name in ("Mars/Olympus", "../etc/passwd", "", "Europe/Paris\x00"):
        with pytest.raises(recurrence.Unprocessable) as refused:
            recurrence.zone(name)
        assert refused.value.code == "time_zone_invalid"


def test_the_shortest_gap_between_occurrences_is_measured_across_dst():
    rule, tz = _rule("FREQ=MINUTELY;INTERVAL=5")
    assert recurrence.Recurrence(rule, tz, dt.datetime(2027, 1, 1)).shortest_gap_s() == 300
    rule, tz = _rule("daily")
    assert recurrence.Recurrence(rule, tz, dt.datetime(2027, 3, 27, 9)).shortest_gap_s() == 23 * 3600
    rule, tz = _rule("FREQ=DAILY;COUNT=1")
    assert recurrence.Recurrence(rule, tz, dt.datetime(2027, 1, 1), recurrence.End(count=1)).shortest_gap_s() is None


# Rules in every accepted form, for the check below.
_FORMS = ["hourly", "daily", "weekly", "monthly", "FREQ=YEARLY", "FREQ=HOURLY;INTERVAL=5", "FREQ=MINUTELY;INTERVAL=90",
          "FREQ=HOURLY;BYMINUTE=15,45", "FREQ=DAILY;INTERVAL=3", "FREQ=DAILY;BYDAY=MO,WE,FR;BYHOUR=2,14;BYMINUTE=30",
          "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH", "FREQ=WEEKLY;INTERVAL=3;WKST=SU;BYDAY=SU,SA",
          "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1", "FREQ=MONTHLY;INTERVAL=2", "FREQ=MONTHLY;BYMONTHDAY=31",
          "FREQ=MONTHLY;BYMONTHDAY=30;INTERVAL=5", "FREQ=MONTHLY;BYMONTHDAY=29", "FREQ=MONTHLY;BYMONTHDAY=1,15,-1",
          "FREQ=MONTHLY;BYDAY=2TU", "FREQ=MONTHLY;BYDAY=-1FR;INTERVAL=4", "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=1",
          "FREQ=YEARLY;BYMONTH=1,7;BYMONTHDAY=15", "FREQ=YEARLY;INTERVAL=2", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29",
          "FREQ=YEARLY;BYDAY=20MO", "FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU;BYHOUR=1", "FREQ=DAILY;BYHOUR=2,3;BYMINUTE=0",
          "FREQ=DAILY;UNTIL=20300101", "FREQ=WEEKLY;COUNT=40"]
_ZONES = ["Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu", "UTC", "America/Santiago",
          "Pacific/Apia"]


def test_the_occurrences_after_an_instant_are_the_same_taken_up_near_it_as_counted_from_the_start():
    """`after` and `until` take a rule up from a period near the instant (a schedule running for years
    costs a few periods); counted from the start instead, every form gives the same instants, in
    zones with DST of 30 minutes, at midnight, and none."""
    rng = random.Random(20310106)
    compared = 0
    for _ in range(500):
        rule, end = recurrence.parse(rng.choice(_FORMS))
        start = dt.datetime(2026, 1, 1) + dt.timedelta(minutes=rng.randrange(3 * 365 * 1440),
                                                        seconds=rng.choice([0, 0, 17]))
        try:
            rec = recurrence.Recurrence(rule, recurrence.zone(rng.choice(_ZONES)), start, end)
        except recurrence.RecurrenceInvalid:  # a yearly rule of interval 2 on a 29th or 30th of another month
            continue
        instant = dt.datetime(2026, 1, 1, tzinfo=UTC) + dt.timedelta(seconds=rng.randrange(6 * 365 * 86_400))
        from_start = list(itertools.islice((at for _, at in rec if at > instant), 5))
        assert rec.after(instant, 5) == from_start, (rule, rec.tz, start, instant)
        found, following = rec.until(after=instant, upto=instant + dt.timedelta(days=40))
        assert found + ([following] if following else []) == [
            at for at in itertools.islice((at for _, at in rec if at > instant), len(found) + 1)], (rule, start)
        compared += 1
    assert compared > 450
