"""`paycell scheduler` as the Procfile runs it, twice at once: the due schedules get exactly one
payment each, and both processes stop cleanly on SIGTERM."""
from __future__ import annotations

import asyncio
import datetime
import os
import signal
import subprocess
import sys

import redis

from paycell.schedules import manage
from tests.api.conftest import parked
from tests.helpers import wait_until
from tests.schedules.conftest import body

SCHEDULES = 20


async def test_two_scheduler_processes_make_one_payment_per_occurrence(made, pool, migrated, tmp_path):
    redis_url = parked(migrated).redis_url  # no worker listens there (flushed)
    settings = made.settings
    user = await made.payer("procs")
    start = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=2)).replace(microsecond=0)
    ids = []
    for _ in range(SCHEDULES):
        accepted = await manage.create(pool, settings, user, body(user, recurrence="FREQ=DAILY;COUNT=1", tz="UTC",
                                                                  start=start.strftime("%Y-%m-%dT%H:%M:%S")))
        ids.append(accepted.schedule_id)
    env = {**os.environ, "PAYCELL_REDIS_URL": redis_url, "PAYCELL_SCHEDULE_JITTER_S": "0",
           "PAYCELL_SCHEDULER_TICK_S": "0.2"}
    paycell = os.path.join(os.path.dirname(sys.executable), "paycell")
    logs = [open(tmp_path / f"scheduler-{n}.log", "wb") for n in range(2)]
    procs = [subprocess.Popen([paycell, "scheduler"], env=env, stdout=log, stderr=log) for log in logs]
    try:
        async def all_made():
            return await pool.fetchval("SELECT count(*) FROM payment_request WHERE scheduled_payment_id = ANY($1::uuid[])",
                                       ids) == SCHEDULES

        assert await wait_until(all_made, timeout_s=30), (tmp_path / "scheduler-0.log").read_text()[-3000:]
        await asyncio.sleep(1)  # more ticks of both: still one payment each
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(20) for p in procs]
        for log in logs:
            log.close()
    assert codes == [0, 0]
    assert await pool.fetchval("SELECT count(*) FROM payment_request WHERE scheduled_payment_id = ANY($1::uuid[])",
                               ids) == SCHEDULES
    runs = await pool.fetch("SELECT schedule_id, count(*) FROM schedule_run WHERE schedule_id = ANY($1::uuid[]) "
                            "GROUP BY schedule_id", ids)
    assert len(runs) == SCHEDULES and all(r["count"] == 1 for r in runs)
    text = "".join((tmp_path / f"scheduler-{n}.log").read_text() for n in range(2))
    assert text.count("scheduler.started") == 2 and text.count("scheduler.stopped") == 2, text[-3000:]
    assert "tick_failed" not in text, text[-3000:]
    messages = redis.Redis.from_url(redis_url).llen("dramatiq:payments")
    assert messages == SCHEDULES
    redis.Redis.from_url(redis_url).flushdb()


async def test_paycell_schedules_runs_the_due_schedules_once_and_says_what_it_did(made, pool, migrated):
    user = await made.payer("cli")
    start = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=1)).replace(microsecond=0)
    accepted = await manage.create(pool, made.settings, user, body(user, recurrence="FREQ=DAILY;COUNT=1", tz="UTC",
                                                                    start=start.strftime("%Y-%m-%dT%H:%M:%S")))
    await asyncio.sleep(max((start - datetime.datetime.now(datetime.timezone.utc)).total_seconds(), 0) + 0.2)
    env = {**os.environ, "PAYCELL_REDIS_URL": parked(migrated).redis_url}  # no worker listens there
    paycell = os.path.join(os.path.dirname(sys.executable), "paycell")
    out = subprocess.run([paycell, "schedules"], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0 and out.stdout.startswith("payments made: "), out.stdout + out.stderr
    assert int(out.stdout.split("payments made: ")[1].split(";")[0]) >= 1
    again = subprocess.run([paycell, "schedules"], capture_output=True, text=True, timeout=60, env=env)
    assert again.returncode == 0, again.stderr
    assert await pool.fetchval("SELECT count(*) FROM payment_request WHERE scheduled_payment_id = $1",
                               accepted.schedule_id) == 1
    redis.Redis.from_url(env["PAYCELL_REDIS_URL"]).flushdb()
