"""A run learns its payment's outcome on the scheduler's ticks; failed runs in a row pause the
schedule with a reason, a success starts the count again, and a resumed schedule runs on."""
from __future__ import annotations

import datetime

from paycell.schedules import clock, manage, outcomes
from paycell.store import instruments, schedules
from tests.schedules.conftest import EPOCH, Sent, decline
from tests.schedules.test_clock import DAY, HOUR, payments_of, runs_of, schedule


async def learn_all(pool, settings, now: datetime.datetime) -> int:
    """Every pending run due for a look at `now` (other tests' runs share the table and the batch)."""
    total = 0
    for _ in range(100):
        resolved = await outcomes.learn(pool, settings, now=now)
        total += resolved
        if not resolved:
            return total
    raise AssertionError("outcomes kept resolving runs")


async def _run_and_decline(pool, settings, schedule_id: str, at: datetime.datetime) -> None:
    await clock.run_due(pool, settings, now=at, enqueue=Sent())
    orders = {r["payment_order_id"] for r in await payments_of(pool, [schedule_id])
              if r["payment_order_status"] == "requested"}
    for order_id in orders:
        await decline(pool, order_id)
    await learn_all(pool, settings, at + HOUR)


async def test_failures_max_failed_runs_in_a_row_pause_the_schedule_and_say_why(made, pool, quiet):
    assert quiet.schedule_failures_max == 3
    user = await made.payer()
    schedule_id = await made.create(user)
    for day in range(2):
        await _run_and_decline(pool, quiet, schedule_id, EPOCH + day * DAY)
    s = await schedule(pool, user, schedule_id)
    assert (s.status, s.consecutive_failures) == ("active", 2)
    await _run_and_decline(pool, quiet, schedule_id, EPOCH + 2 * DAY)
    s = await schedule(pool, user, schedule_id)
    assert (s.status, s.paused_reason, s.consecutive_failures) == ("paused", "failures_max", 3)
    assert [(r["outcome"], r["failure_code"]) for r in await runs_of(pool, schedule_id)] == [("failed", "card_declined")] * 3
    # Paused, it makes no payment.
    await clock.run_due(pool, quiet, now=EPOCH + 5 * DAY, enqueue=Sent())
    assert len(await payments_of(pool, [schedule_id])) == 3
    # Resumed, it runs from its next occurrence after now, with a fresh count.
    view = await manage.change(pool, quiet, user, schedule_id, b'{"status": "active"}', now=EPOCH + 5 * DAY + HOUR)
    assert (view.status, view.paused_reason, view.consecutive_failures) == ("active", None, 0)
    assert view.next_occurrences[0] == "2031-01-12T08:00:00Z"
    await clock.run_due(pool, quiet, now=EPOCH + 6 * DAY, enqueue=Sent())
    assert len(await payments_of(pool, [schedule_id])) == 4


async def test_a_successful_run_starts_the_failure_count_again(made, pool, quiet):
    from tests.helpers import settle_payin

    user = await made.payer()
    schedule_id = await made.create(user)
    for day in range(2):
        await _run_and_decline(pool, quiet, schedule_id, EPOCH + day * DAY)
    await clock.run_due(pool, quiet, now=EPOCH + 2 * DAY, enqueue=Sent())
    (order_id,) = [r["payment_order_id"] for r in await payments_of(pool, [schedule_id])
                   if r["payment_order_status"] == "requested"]
    # Still processing: the run stays pending and is looked at again later.
    await learn_all(pool, quiet, EPOCH + 2 * DAY + HOUR)
    assert [r["outcome"] for r in await runs_of(pool, schedule_id)] == ["failed", "failed", "pending"]
    async with pool.acquire() as conn, conn.transaction():
        await settle_payin(conn, order_id)
    assert await learn_all(pool, quiet, EPOCH + 3 * DAY) >= 1
    s = await schedule(pool, user, schedule_id)
    assert (s.status, s.consecutive_failures) == ("active", 0)
    assert [r["outcome"] for r in await runs_of(pool, schedule_id)] == ["failed", "failed", "succeeded"]


async def test_a_run_whose_instrument_was_detached_fails_without_a_payment_and_counts(made, pool, quiet):
    user = await made.payer()
    schedule_id = await made.create(user)
    async with pool.acquire() as conn:
        (inst,) = await instruments.list_attached(conn, user, limit=10, before=None)
        await instruments.detach(conn, user, inst["instrument_id"])
    for day in range(3):
        result = await clock.run_due(pool, quiet, now=EPOCH + day * DAY, enqueue=Sent())
        assert result.refused >= 1
    assert await payments_of(pool, [schedule_id]) == []
    runs = await runs_of(pool, schedule_id)
    assert [(r["outcome"], r["failure_code"], r["payment_id"]) for r in runs] == [
        ("failed", "instrument_not_attached", None)] * 3
    s = await schedule(pool, user, schedule_id)
    assert (s.status, s.paused_reason) == ("paused", "failures_max")


async def test_an_old_run_resolved_after_a_newer_one_does_not_undo_its_count(made, pool, quiet):
    from tests.helpers import settle_payin

    user = await made.payer()
    schedule_id = await made.create(user)
    await clock.run_due(pool, quiet, now=EPOCH, enqueue=Sent())
    await clock.run_due(pool, quiet, now=EPOCH + DAY, enqueue=Sent())
    by_payment = {r["payment_id"]: r["payment_order_id"] for r in await payments_of(pool, [schedule_id])}
    first, second = [r["payment_id"] for r in await runs_of(pool, schedule_id)]
    await decline(pool, by_payment[second])
    await learn_all(pool, quiet, EPOCH + 2 * DAY)
    async with pool.acquire() as conn, conn.transaction():
        await settle_payin(conn, by_payment[first])
    await learn_all(pool, quiet, EPOCH + 3 * DAY)
    s = await schedule(pool, user, schedule_id)
    assert s.consecutive_failures == 1 and s.last_resolved_at == EPOCH + DAY
    async with pool.acquire() as conn:
        assert await schedules.get(conn, "someone-else", schedule_id) is None
