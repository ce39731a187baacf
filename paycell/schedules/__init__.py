"""Scheduled and recurring payments (issue 9), and the clock of the periodic actors.

- recurrence.py   RRULEs and presets in a time zone: parsing, refusals, the instants they fall on
- occurrences.py  an occurrence's payment id, jitter and outcome counting
- manage.py       the API's operations on a user's schedules
- clock.py        claiming due schedules and making their payments, exactly once per occurrence
- outcomes.py     runs learning their payment's outcome; pausing after failures in a row
- periodic.py     the maintenance actors' cron slots, once per slot across processes
- process.py      `paycell scheduler`: the loop that ticks all of the above
"""
