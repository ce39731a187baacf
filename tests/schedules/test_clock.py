"""The schedule clock against the real Postgres, at instants the test names: exactly one payment
per occurrence whatever runs it, crashes on either side of the commit, catch-up, jitter, ends."""
from __future__ import annotations

import asyncio
import datetime

import asyncpg
import msgspec

from paycell.schedules import clock, occurrences
from paycell.store import schedules
from paycell.store.db import connect, create_pool
from tests.schedules.conftest import EPOCH, Sent

HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)


async def payments_of(pool, schedule_ids: list[str]) -> list[asyncpg.Record]:
    return await pool.fetch("""SELECT r.payment_id::text, r.scheduled_payment_id::text, r.amount_minor, o.user_id, o.payment_order_id::text,
                                      o.payment_order_status
                                 FROM payment_request r JOIN payment_order o USING (user_id, payment_id)
                                WHERE r.scheduled_payment_id = ANY($1::uuid[])""", schedule_ids)


async def runs_of(pool, schedule_id: str) -> list[asyncpg.Record]:
    return await pool.fetch("""SELECT occurrence_at, outcome, payment_id::text, failure_code FROM schedule_run
                                WHERE schedule_id = $1 ORDER BY occurrence_at""", schedule_id)


async def schedule(pool, user: str, schedule_id: str):
    async with pool.acquire() as conn:
        return await schedules.get(conn, user, schedule_id)


async def test_three_clocks_over_1000_due_schedules_make_exactly_1000_payments(made, pool, quiet):
    payers = [await made.payer("trio") for _ in range(10)]
    ids = await asyncio.gather(*(made.create(payers[n % 10], recurrence="FREQ=DAILY;COUNT=1")
                                 for n in range(1_000)))
    settings = msgspec.structs.replace(quiet, schedule_claim_batch_rows=37)
    pools = [await create_pool(settings, size_max=2) for _ in range(3)]
    sent = [Sent() for _ in range(3)]
    try:
        results = await asyncio.gather(*(clock.run_due(p, settings, now=EPOCH + HOUR, enqueue=s, batches_max=1_000)
                                         for p, s in zip(pools, sent)))
    finally:
        for p in pools:
            await p.close()
    made_now = await payments_of(pool, ids)
    assert len(made_now) == 1_000
    assert {r["scheduled_payment_id"] for r in made_now} == set(ids)
    assert all(r["payment_order_status"] == "requested" for r in made_now)
    assert sum(r.created for r in results) == 1_000
    assert all(r.created > 0 for r in results), "the three clocks shared the work"
    orders = [m[1:] for s in sent for m in s.messages]  # screen's message carries the order's key
    assert sorted(orders) == sorted((r["user_id"], r["payment_order_id"]) for r in made_now)
    assert {m[0] for s in sent for m in s.messages} == {"screen"}
    # The payment id is the occurrence's: a fourth clock finds nothing to do.
    assert (await clock.run_due(pool, settings, now=EPOCH + HOUR, enqueue=Sent())).created == 0
    outcomes = await pool.fetch("SELECT outcome, count(*) FROM schedule_run WHERE schedule_id = ANY($1::uuid[]) "
                                "GROUP BY outcome", ids)
    assert {r["outcome"]: r["count"] for r in outcomes} == {"pending": 1_000}
    ended = await pool.fetchval("SELECT count(*) FROM payment_schedule WHERE schedule_id = ANY($1::uuid[]) "
                                "AND status = 'ended'", ids)
    assert ended == 1_000


async def test_a_payment_made_by_a_schedule_is_the_one_the_api_would_make(made, pool, quiet):
    user = await made.payer()
    schedule_id = await made.create(user, amount="12.34")
    await clock.run_due(pool, quiet, now=EPOCH, enqueue=Sent())
    (made_now,) = await payments_of(pool, [schedule_id])
    assert made_now["payment_id"] == occurrences.payment_id(schedule_id, EPOCH)
    assert made_now["amount_minor"] == 12_34
    key = await pool.fetchrow("SELECT response_status, locked_until FROM idempotency_key WHERE user_id = $1 AND key = $2",
                              user, made_now["payment_id"])
    assert key["response_status"] == 202 and key["locked_until"] is None
    events = await pool.fetch("SELECT type FROM event WHERE payment_id = $1", made_now["payment_id"])
    assert [e["type"] for e in events] == ["payment.requested"]


async def test_a_crash_between_claim_and_commit_leaves_nothing_and_the_next_tick_runs_it(made, pool, quiet):
    user = await made.payer()
    schedule_id = await made.create(user)
    conn = await connect(quiet.app_database_url)
    try:
        tx = conn.transaction()
        await tx.start()
        result, orders = await clock.run_batch(conn, quiet, now=EPOCH, limit=10_000)
        assert result.created >= 1 and orders
        # The process dies before it commits: its connection goes, and Postgres rolls back.
        await pool.execute("SELECT pg_terminate_backend($1)", conn.get_server_pid())
    finally:
        await conn.close(timeout=5)
    assert await payments_of(pool, [schedule_id]) == []
    assert await runs_of(pool, schedule_id) == []
    assert (await schedule(pool, user, schedule_id)).next_occurrence_at == EPOCH
    await clock.run_due(pool, quiet, now=EPOCH, enqueue=Sent())
    assert len(await payments_of(pool, [schedule_id])) == 1


async def test_a_crash_between_commit_and_enqueue_is_redriven_by_the_sweeper(made, pool, quiet, broker, worker, owner):
    from paycell.sweeper import sweep_once
    from tests.helpers import wait_until

    user = await made.payer()
    schedule_id = await made.create(user)
    result = await clock.run_due(pool, quiet, now=EPOCH, enqueue=Sent(fail=True))
    assert result.created == 1
    (made_now,) = await payments_of(pool, [schedule_id])
    assert made_now["payment_order_status"] == "requested"
    # No message reached a worker; once the order's lease runs out the sweeper sends it to `screen`
    # (its lease put far back: the sweeper takes the oldest leases first, and other tests leave some).
    await owner.execute("UPDATE payment_order SET lease_until = now() - interval '1 year' WHERE payment_order_id = $1",
                        made_now["payment_order_id"])
    await sweep_once(pool, broker, quiet)

    async def done():
        return await pool.fetchval("SELECT status FROM payment_request WHERE user_id = $1 AND payment_id = $2",
                                   user, made_now["payment_id"]) == "succeeded"

    assert await wait_until(done, timeout_s=30)


async def test_after_downtime_the_latest_missed_occurrence_runs_and_the_earlier_ones_are_skipped(made, pool, quiet):
    user = await made.payer()
    schedule_id = await made.create(user)  # daily at 09:00 Paris from EPOCH
    result = await clock.run_due(pool, quiet, now=EPOCH + 3 * DAY + HOUR, enqueue=Sent())
    assert result.created >= 1
    runs = await runs_of(pool, schedule_id)
    assert [(r["occurrence_at"], r["outcome"]) for r in runs] == [
        (EPOCH, "skipped"), (EPOCH + DAY, "skipped"), (EPOCH + 2 * DAY, "skipped"), (EPOCH + 3 * DAY, "pending")]
    (made_now,) = await payments_of(pool, [schedule_id])
    assert made_now["payment_id"] == runs[-1]["payment_id"] == occurrences.payment_id(schedule_id, EPOCH + 3 * DAY)
    s = await schedule(pool, user, schedule_id)
    assert (s.last_occurrence_at, s.next_occurrence_at, s.status) == (EPOCH + 3 * DAY, EPOCH + 4 * DAY, "active")
    # On time again: the next day's occurrence runs alone.
    await clock.run_due(pool, quiet, now=EPOCH + 4 * DAY, enqueue=Sent())
    assert [r["outcome"] for r in await runs_of(pool, schedule_id)][-1] == "pending"
    assert len(await payments_of(pool, [schedule_id])) == 2


async def test_a_schedule_ends_after_its_count(made, pool, quiet):
    user = await made.payer()
    schedule_id = await made.create(user, recurrence="FREQ=WEEKLY;COUNT=2")
    for week in range(3):
        await clock.run_due(pool, quiet, now=EPOCH + week * 7 * DAY, enqueue=Sent())
    assert len(await payments_of(pool, [schedule_id])) == 2
    s = await schedule(pool, user, schedule_id)
    assert (s.status, s.next_run_at, s.last_occurrence_at) == ("ended", None, EPOCH + 7 * DAY)


async def test_jitter_spreads_one_minutes_schedules_over_the_window(made, pool, migrated):
    settings = msgspec.structs.replace(migrated, schedule_jitter_s=600)
    user = await made.payer()
    ids = await asyncio.gather(*(made.create(user, settings=settings) for _ in range(200)))
    rows = await pool.fetch("SELECT next_occurrence_at, next_run_at FROM payment_schedule "
                            "WHERE schedule_id = ANY($1::uuid[])", ids)
    delays = sorted((r["next_run_at"] - r["next_occurrence_at"]).total_seconds() for r in rows)
    assert delays[0] >= 0 and delays[-1] < 600
    assert len(set(delays)) > 190
    # Five minutes into the window, about half have run.
    result = await clock.run_due(pool, settings, now=EPOCH + datetime.timedelta(minutes=5), enqueue=Sent())
    assert 50 <= len(await payments_of(pool, ids)) <= 150, result
    # The same occurrence of the same schedule always gets the same delay.
    assert occurrences.jitter(ids[0], EPOCH, 600) == occurrences.jitter(ids[0], EPOCH, 600)


async def test_a_changed_amount_and_rule_apply_from_the_next_occurrence(made, pool, quiet):
    from paycell.schedules import manage

    user = await made.payer()
    schedule_id = await made.create(user, amount="10.00")
    await clock.run_due(pool, quiet, now=EPOCH, enqueue=Sent())
    view = await manage.change(pool, quiet, user, schedule_id,
                               b'{"amount": "11.50", "recurrence": "FREQ=WEEKLY;BYDAY=FR"}', now=EPOCH + HOUR)
    assert view.next_occurrences[:2] == ["2031-01-10T08:00:00Z", "2031-01-17T08:00:00Z"]
    assert (await clock.run_due(pool, quiet, now=EPOCH + DAY, enqueue=Sent())).created == 0
    await clock.run_due(pool, quiet, now=EPOCH + 4 * DAY, enqueue=Sent())
    amounts = sorted(r["amount_minor"] for r in await payments_of(pool, [schedule_id]))
    assert amounts == [10_00, 11_50]
    assert [r["occurrence_at"] for r in await runs_of(pool, schedule_id)] == [EPOCH, EPOCH + 4 * DAY]
