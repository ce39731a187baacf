"""The console's pages over real HTTP with real data: searches, schedules, reconciliation runs and
breakers (the browser tests cover sign-in, the timeline, dead letters and reviews)."""
from __future__ import annotations

import datetime
import uuid

import msgspec
import pytest
import redis as redis_lib

from paycell.console import chart
from paycell.http.app import create_app
from paycell.http.schedules import SCHEDULES_PATH
from paycell.psp.base import PspTransientError
from paycell.psp.breakers import KEY_PREFIX, Breakers
from tests.console.support import operator_id, page_csrf, sign_in
from tests.helpers import assert_ledger_clean, attach, auth_header, new_user, pay, wait_until
from tests.review.support import item_of, order_state

pytestmark = pytest.mark.usefixtures("console_worker")


async def test_a_payment_is_found_by_its_order_id_and_by_its_providers_reference(web, console_settings,
                                                                                  operator_token, pool):
    user = new_user("found")
    status, body = await pay(web, console_settings, user, "tok_card_ok", f"wallet:{user}", "3.21", "card", wait_s=10)
    assert status == 201 and body["status"] == "succeeded", body
    order = body["orders"][0]
    await sign_in(web, operator_token(operator_id()))
    by_order = await web.get(f"/console/payments?q={order['payment_order_id']}", allow_redirects=False)
    assert by_order.status == 303
    assert by_order.headers["Location"] == f"/console/payments/{user}/{body['payment_id']}"
    by_reference = await (await web.get(f"/console/payments?q={order['psp_reference']}")).text()
    assert body["payment_id"] in by_reference
    by_status = await (await web.get(f"/console/payments?q={user}&status=failed")).text()
    assert body["payment_id"] not in by_status
    nothing = await web.get(f"/console/payments?q={uuid.uuid4()}")
    assert nothing.status == 200 and "No payment matches" in await nothing.text()
    bad = await web.get("/console/payments?status=lost")
    assert bad.status == 400 and "invalid_request" in await bad.text()
    await assert_ledger_clean(pool)


async def test_the_schedules_page_lists_a_users_schedules_and_the_paused_ones(web, console_settings, operator_token):
    user = new_user("sched")
    await attach(web, console_settings, user, "tok_card_ok")
    schedule_id = str(uuid.uuid4())
    body = {"schedule_id": schedule_id, "user_id": user, "from_acct": "tok_card_ok", "to_acct": f"wallet:{user}",
            "amount": "25.00", "currency": "USD", "payment_option": "card", "recurrence": "monthly",
            "time_zone": "Europe/Paris", "start": "2031-01-31T09:00:00"}
    headers = auth_header(console_settings, user)
    assert (await web.post(SCHEDULES_PATH, json=body, headers=headers)).status == 201
    await sign_in(web, operator_token(operator_id()))
    mine = await (await web.get(f"/console/schedules?user={user}")).text()
    assert schedule_id in mine and "25.00 USD" in mine
    paused = await web.put(f"{SCHEDULES_PATH}/{schedule_id}", json={"status": "paused"}, headers=headers)
    assert paused.status == 200
    page = await (await web.get("/console/schedules")).text()
    assert schedule_id in page.split("<h2>Paused</h2>", 1)[1]
    assert "paused_by_user" in page


async def test_running_the_internal_reconciliation_shows_its_run(web, operator_token, pool):
    await sign_in(web, operator_token(operator_id()))
    before = await pool.fetchval("SELECT count(*) FROM recon_run WHERE kind = 'internal'")
    done = await web.post("/console/reconciliation/internal", data={"csrf": await page_csrf(web)},
                          allow_redirects=False)
    assert done.status == 303 and done.headers["Location"] == "/console/reconciliation?done=reconcile_enqueued"
    assert await wait_until(lambda: _runs_after(pool, before), timeout_s=60)
    run_id = await pool.fetchval("SELECT run_id::text FROM recon_run WHERE kind = 'internal' "
                                 "ORDER BY started_at DESC LIMIT 1")
    listing = await (await web.get("/console/reconciliation")).text()
    assert run_id in listing
    run = await web.get(f"/console/reconciliation/{run_id}")
    assert run.status == 200 and "Breaks" in await run.text()
    assert (await web.get(f"/console/reconciliation/{uuid.uuid4()}")).status == 404
    await assert_ledger_clean(pool)


async def _runs_after(pool, before: int) -> bool:
    finished = "SELECT count(*) FROM recon_run WHERE kind = 'internal' AND finished_at IS NOT NULL"
    return await pool.fetchval(finished) > before


async def test_the_breakers_page_shows_an_open_breaker(web, console_settings, operator_token):
    # One technical failure opens `adyen`'s breaker, as a worker's call would (threshold 1 here).
    breakers = Breakers(msgspec.structs.replace(console_settings, psp_breaker_failures_max=1))

    async def down():
        raise PspTransientError("adyen: 503")
    try:
        with pytest.raises(PspTransientError):
            await breakers.call("adyen", down)
        await sign_in(web, operator_token(operator_id()))
        page = await (await web.get("/console/breakers")).text()
        row = page.split("<td>adyen</td>", 1)[1].split("</tr>", 1)[0]
        assert "opened" in row
        assert "closed" in page.split("<td>test</td>", 1)[1].split("</tr>", 1)[0]
    finally:
        await breakers.close()
        own = redis_lib.Redis.from_url(console_settings.redis_url)
        own.delete(f"{KEY_PREFIX}adyen", f"{KEY_PREFIX}adyen::failure_count")
        own.close()


def test_the_chart_stacks_each_minutes_statuses_in_proportion():
    now = datetime.datetime(2030, 5, 1, 12, 30, 40, tzinfo=datetime.timezone.utc)
    minute = now.replace(second=0)
    rows = [{"minute": minute, "status": "succeeded", "n": 6}, {"minute": minute, "status": "failed", "n": 2},
            {"minute": minute - datetime.timedelta(minutes=59), "status": "succeeded", "n": 4},
            {"minute": minute - datetime.timedelta(minutes=60), "status": "failed", "n": 99}]  # outside the hour
    drawn = chart.build(rows, now)
    assert drawn.peak == 8 and drawn.totals["succeeded"] == 10 and drawn.totals["failed"] == 2
    last = [b for b in drawn.bars if b.minute == "12:30"]
    assert [(b.status, b.height) for b in last] == [("succeeded", 135.0), ("failed", 45.0)]
    assert last[0].y == 45.0 and last[1].y == 0.0  # stacked: failed on top of succeeded, the peak at the top
    first = [b for b in drawn.bars if b.minute == "11:31"]
    assert first[0].x == 0 and first[0].height == 90.0
    assert (drawn.first_minute, drawn.last_minute) == ("11:31", "12:30 UTC")


async def test_the_overview_leaves_the_chart_out_when_counting_takes_too_long(aiohttp_client, console_settings,
                                                                              operator_token, owner):
    web = await aiohttp_client(create_app(msgspec.structs.replace(console_settings, console_chart_timeout_ms=300)))
    await sign_in(web, operator_token(operator_id()))
    async with owner.transaction():
        # Counting waits for this lock past its timeout (a busy hour's count would run as long).
        await owner.execute("LOCK TABLE payment_request IN ACCESS EXCLUSIVE MODE")
        page = await web.get("/console/")
        html = await page.text()
    assert page.status == 200 and 'id="chart-timed-out"' in html and "<svg" not in html
    assert "Breakers" in html and "Queues" in html


async def test_declining_a_review_item_fails_its_payment_and_a_post_without_the_token_changes_nothing(
        web, aiohttp_client, console_settings, operator_token, pool):
    user, operator = new_user("declined"), operator_id()
    status, body = await pay(web, console_settings, user, "tok_card_ok", f"wallet:{user}", "600.00", "card")
    assert status == 202, body
    item = await wait_until(lambda: item_of(pool, user, body["payment_id"]), timeout_s=30)
    assert item is not None
    assert await wait_until(lambda: _parked(pool, item.payment_order_id), timeout_s=30)
    await sign_in(web, operator_token(operator))
    path = f"/console/reviews/{item.review_id}"
    forged = await web.post(f"{path}/approve", data={"note": "looks fine"}, allow_redirects=False)
    assert forged.status == 403 and "csrf_rejected" in await forged.text()
    assert (await item_of(pool, user, body["payment_id"])).state == "open"
    assert await order_state(pool, item.payment_order_id) == "in_review"
    # The payer cannot review their own payment, operator or not.
    own = await aiohttp_client(create_app(console_settings))  # another browser: the payer's own sign-in
    await sign_in(own, operator_token(user))
    refused = await own.post(f"{path}/approve", data={"csrf": await page_csrf(own)}, allow_redirects=False)
    assert refused.status == 403 and "review_own_payment" in await refused.text()
    declined = await web.post(f"{path}/decline", data={"csrf": await page_csrf(web, path), "note": "stolen card"},
                              allow_redirects=False)
    assert declined.status == 303 and declined.headers["Location"] == f"{path}?done=declined"
    page = await (await web.get(path)).text()
    assert 'id="review-state">declined' in page and "stolen card" in page
    final = await pool.fetchrow("SELECT status, failure_code FROM payment_request WHERE user_id = $1 "
                                "AND payment_id = $2", user, uuid.UUID(body["payment_id"]))
    assert (final["status"], final["failure_code"]) == ("failed", "review_declined")
    await assert_ledger_clean(pool)


async def _parked(pool, order_id: str) -> bool:
    return await order_state(pool, order_id) == "in_review"
