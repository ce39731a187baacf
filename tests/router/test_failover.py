"""Circuit breakers shared by every process, failover that never double-charges, and pending
charges polled with backoff up to a deadline. Every charge is counted at the simulators
themselves: exactly one per paid order, across every connector it went through."""
from __future__ import annotations

import asyncio
import datetime
import uuid

import pytest

from paycell.actors.broker import build_broker, send
from paycell.actors.outcome import poll_delay_ms
from paycell.psp.base import PspTransientError
from paycell.psp.breakers import BreakerOpen, Breakers
from paycell.store import payments
from paycell.sweeper import sweep_once
from tests.helpers import assert_ledger_clean, fund_wallet, new_order, new_user, wait_until
from tests.router.support import attach_on, attempts, finished, pay_in, pay_out
from tests.helpers import lock_by_id

pytestmark = pytest.mark.usefixtures("router_worker")


@pytest.fixture
async def breakers(router_settings):
    """This test process's view of the breakers the worker uses: the same Redis keys."""
    found = Breakers(router_settings)
    yield found
    await found.close()


async def charged_at(sims, order_id: str) -> dict[str, bool]:
    return {name: (await sim.key_stats(order_id))["charged"] for name, sim in sims.items()}


async def submits_at(sims, order_id: str) -> dict[str, int]:
    return {name: (await sim.key_stats(order_id))["submits"] for name, sim in sims.items()}


async def wait_for_state(breakers, name: str, state: str, timeout_s: float = 20) -> None:
    async def reached():
        return await breakers.state(name) == state
    assert await wait_until(reached, timeout_s=timeout_s, interval_s=0.05), await breakers.state(name)


async def test_failover_after_an_unknown_outcome_only_once_the_first_connector_holds_nothing(
        router_api, router_settings, pool, sims):
    """rt_a fails the first submit (503, nothing charged): it is asked, says it holds no such
    payment, and only then does the order move to rt_b, under the same key."""
    user = new_user()
    await attach_on(router_api, router_settings, user, "tok_card_flaky", "card", "rt_a", "rt_b")
    payment_id = await pay_in(router_api, router_settings, user, "tok_card_flaky")
    view = await finished(router_api, router_settings, user, payment_id)
    order = view["orders"][0]
    assert view["status"] == "succeeded" and order["psp"] == "rt_b"
    assert attempts(view) == [("rt_a", "routed"), ("rt_b", "failover")]
    key = order["payment_order_id"]
    assert await charged_at(sims, key) == {"rt_a": False, "rt_b": True, "rt_c": False}
    assert (await submits_at(sims, key))["rt_a"] == 1  # asked (GET), never submitted twice
    types = [e["type"] for e in view["events"]]
    assert types.index("order.psp_attempt_failed") < types.index("order.psp_failover") < types.index("order.posted")
    # It left rt_a no sooner than PAYCELL_PSP_FAILOVER_QUIET_S (0.5 s here) after the failed call.
    at = {e["type"]: datetime.datetime.fromisoformat(e["occurred_at"].replace("Z", "+00:00"))
          for e in reversed(view["events"])}  # the first event of each type
    assert (at["order.psp_failover"] - at["order.psp_attempt_failed"]).total_seconds() >= 0.5
    await assert_ledger_clean(pool)


async def test_a_lost_response_is_found_at_the_first_connector_and_never_charged_twice(
        router_api, router_settings, pool, sims):
    """rt_a charges and drops the answer: asked first, it has the charge, which the order keeps."""
    user = new_user()
    await attach_on(router_api, router_settings, user, "tok_card_drop", "card", "rt_a", "rt_b")
    payment_id = await pay_in(router_api, router_settings, user, "tok_card_drop")
    view = await finished(router_api, router_settings, user, payment_id)
    key = view["orders"][0]["payment_order_id"]
    assert view["status"] == "succeeded" and view["orders"][0]["psp"] == "rt_a"
    assert attempts(view) == [("rt_a", "routed")]
    assert await charged_at(sims, key) == {"rt_a": True, "rt_b": False, "rt_c": False}
    assert (await submits_at(sims, key))["rt_b"] == 0
    await assert_ledger_clean(pool)


async def test_a_decline_never_fails_over(router_api, router_settings, pool, sims):
    user = new_user()
    await attach_on(router_api, router_settings, user, "tok_card_decline", "card", "rt_a", "rt_b")
    payment_id = await pay_in(router_api, router_settings, user, "tok_card_decline")
    view = await finished(router_api, router_settings, user, payment_id)
    assert (view["status"], view["failure_code"]) == ("failed", "card_declined")
    assert attempts(view) == [("rt_a", "routed")]
    assert (await submits_at(sims, view["orders"][0]["payment_order_id"]))["rt_b"] == 0
    await assert_ledger_clean(pool)


async def test_while_the_first_connector_cannot_answer_the_order_waits_and_never_asks_the_next(
        router_api, router_settings, pool, sims, breakers):
    """rt_dead refuses every connection: the outcome stays unknown, its breaker opens after 3
    failures (this test process sees it: the state is shared), the order waits on it and ends in
    needs_attention when its retries run out. rt_b is never called for it."""
    user = new_user()
    await attach_on(router_api, router_settings, user, "tok_bank_ok", "bank_account", "rt_dead", "rt_b")
    payment_id = await pay_in(router_api, router_settings, user, "tok_bank_ok", option="bank_account")
    await wait_for_state(breakers, "rt_dead", "opened")
    view = await finished(router_api, router_settings, user, payment_id, timeout_s=60)
    key = view["orders"][0]["payment_order_id"]
    assert (view["status"], view["failure_code"]) == ("needs_attention", "retries_exhausted")
    assert attempts(view) == [("rt_dead", "routed")]
    assert await submits_at(sims, key) == {"rt_a": 0, "rt_b": 0, "rt_c": 0}
    errors = [e for e in view["events"] if e["type"] == "order.psp_attempt_failed"]
    assert len(errors) > 3  # calls went on failing after the breaker opened, refused without calling
    await assert_ledger_clean(pool)


async def test_the_breaker_counts_technical_failures_only_opens_fails_over_half_opens_and_closes(
        router_api, router_settings, pool, sims, breakers):
    """card/GBP goes to rt_c, then rt_b. Declines at rt_c leave its breaker closed; an outage
    opens it after exactly 3 calls; meanwhile new orders go to rt_b; the order caught in the
    outage waits, and after the reopen time its half-open call finds rt_c holds nothing, so it
    fails over; the next order goes to rt_c again and its breaker closes."""
    user = new_user()
    for token in ("tok_card_decline", "tok_card_ok"):
        await attach_on(router_api, router_settings, user, token, "card", "rt_c", "rt_b")
    declined = [await pay_in(router_api, router_settings, user, "tok_card_decline", currency="GBP") for _ in range(4)]
    for payment_id in declined:
        assert (await finished(router_api, router_settings, user, payment_id))["status"] == "failed"
    assert (await breakers.state("rt_c"), await breakers.failures("rt_c")) == ("closed", 0)

    await sims["rt_c"].outage(True)
    try:
        caught = await pay_in(router_api, router_settings, user, "tok_card_ok", currency="GBP")
        await wait_for_state(breakers, "rt_c", "opened")
        assert (await sims["rt_c"].outage_stats())["refused"] == 3  # the threshold, then no call reached it
        # Traffic fails over: a new order goes to rt_b while rt_c's breaker is open.
        routed_away = await pay_in(router_api, router_settings, user, "tok_card_ok", currency="GBP")
        view = await finished(router_api, router_settings, user, routed_away)
        assert view["status"] == "succeeded" and attempts(view) == [("rt_b", "routed")]
        assert (await sims["rt_c"].outage_stats())["refused"] == 3
    finally:
        await sims["rt_c"].outage(False)

    view = await finished(router_api, router_settings, user, caught, timeout_s=30)
    assert view["status"] == "succeeded", view
    assert attempts(view) == [("rt_c", "routed"), ("rt_b", "failover")]
    assert await charged_at(sims, view["orders"][0]["payment_order_id"]) == {"rt_a": False, "rt_b": True,
                                                                              "rt_c": False}
    assert await breakers.state("rt_c") == "closed"  # the half-open call (rt_c answering "none") closed it
    back = await pay_in(router_api, router_settings, user, "tok_card_ok", currency="GBP")
    view = await finished(router_api, router_settings, user, back)
    assert view["status"] == "succeeded" and attempts(view) == [("rt_c", "routed")]
    await assert_ledger_clean(pool)


async def test_a_breaker_opened_in_another_process_routes_the_workers_orders_elsewhere(
        router_api, router_settings, pool, sims, breakers):
    """This test process opens rt_a's breaker (3 technical failures through it); the worker then
    routes card/USD orders to rt_b, and once the reopen time has passed, to rt_a again (the
    half-open call), which closes it for everyone."""
    await _open(breakers, "rt_a")

    async def fail():
        raise PspTransientError("simulated timeout")
    with pytest.raises(BreakerOpen):
        await breakers.call("rt_a", fail)  # refused without calling
    user = new_user()
    await attach_on(router_api, router_settings, user, "tok_card_ok", "card", "rt_a", "rt_b")
    first = await pay_in(router_api, router_settings, user, "tok_card_ok")
    view = await finished(router_api, router_settings, user, first)
    assert view["status"] == "succeeded" and attempts(view) == [("rt_b", "routed")]
    opened = [e for e in view["events"] if e["type"] == "order.psp_submitting"]
    assert opened[0]["data"].get("breaker_open") == "rt_a"
    await wait_for_state(breakers, "rt_a", "half-opened", timeout_s=5)
    second = await pay_in(router_api, router_settings, user, "tok_card_ok")
    view = await finished(router_api, router_settings, user, second)
    assert view["status"] == "succeeded" and attempts(view) == [("rt_a", "routed")]
    assert await breakers.state("rt_a") == "closed"
    await assert_ledger_clean(pool)


async def _routed_order(pool, user: str, candidates: list[str]) -> str:
    """A pay-in order `screen` has routed to the first of `candidates` (nothing sent yet)."""
    async with pool.acquire() as conn, conn.transaction():
        order_id = await new_order(conn, user, "payin", 7_00, instrument="tok_card_ok")
        order = await lock_by_id(conn, order_id)
        await payments.move(conn, order, "psp_submitting", event="order.psp_submitting", psp=candidates[0],
                            attempt=1, psp_candidates=candidates, psp_attempt_no=1, psp_attempt_from=1,
                            lease_until=payments.lease(30), psp_attempt=(1, candidates[0], "routed"))
    return order_id


async def _open(breakers, name: str) -> None:
    """Open `name`'s breaker from this process: technical failures until it refuses calls (at
    most the threshold; one when an earlier test left it half-open)."""
    async def fail():
        raise PspTransientError("simulated timeout")
    for _ in range(3):
        with pytest.raises(PspTransientError):
            await breakers.call(name, fail)
        if await breakers.state(name) == "opened":
            break
    assert await breakers.state(name) == "opened"


async def _completed(pool, order_id: str) -> bool:
    async def done():
        return await pool.fetchval("SELECT payment_order_status FROM payment_order WHERE payment_order_id = $1",
                                   uuid.UUID(order_id)) == "completed"
    return await wait_until(done, timeout_s=20)


async def test_an_open_breaker_before_anything_was_sent_moves_the_order_on_at_once(
        router_api, router_settings, pool, sims, breakers):
    """Opened between `screen` and `charge`: nothing was sent to rt_a, so the order moves to
    rt_b at once (reason breaker_open), without waiting for rt_a."""
    user = new_user()
    await attach_on(router_api, router_settings, user, "tok_card_ok", "card", "rt_a", "rt_b")
    order_id = await _routed_order(pool, user, ["rt_a", "rt_b"])
    await _open(breakers, "rt_a")
    send(build_broker(router_settings), "charge", user, order_id)
    assert await _completed(pool, order_id)
    rows = await pool.fetch("SELECT connector, reason FROM psp_attempt WHERE user_id = $1 ORDER BY attempt_no", user)
    assert [tuple(r) for r in rows] == [("rt_a", "routed"), ("rt_b", "breaker_open")]
    assert await submits_at(sims, order_id) == {"rt_a": 0, "rt_b": 1, "rt_c": 0}
    await wait_for_state(breakers, "rt_a", "half-opened", timeout_s=5)
    await assert_ledger_clean(pool)


async def test_when_every_candidate_is_open_the_order_waits_for_its_own_connector(
        router_api, router_settings, pool, sims, breakers):
    """rt_a and rt_b both open: the order neither cascades to the last candidate nor fails; it
    waits (retries with backoff) and is submitted to rt_a once its breaker half-opens."""
    user = new_user()
    await attach_on(router_api, router_settings, user, "tok_card_ok", "card", "rt_a", "rt_b")
    order_id = await _routed_order(pool, user, ["rt_a", "rt_b"])
    await _open(breakers, "rt_a")
    await _open(breakers, "rt_b")
    send(build_broker(router_settings), "charge", user, order_id)
    assert await _completed(pool, order_id)
    rows = await pool.fetch("SELECT connector, reason FROM psp_attempt WHERE user_id = $1 ORDER BY attempt_no", user)
    assert [tuple(r) for r in rows] == [("rt_a", "routed")]
    assert await submits_at(sims, order_id) == {"rt_a": 1, "rt_b": 0, "rt_c": 0}
    waited = await pool.fetchval("SELECT count(*) FROM event WHERE payment_order_id = $1 "
                                 "AND type = 'order.psp_attempt_failed'", uuid.UUID(order_id))
    assert waited >= 1
    assert await pool.fetchval("SELECT attempt FROM payment_order WHERE payment_order_id = $1",
                               uuid.UUID(order_id)) == 1  # refused calls sent nothing: still its first try
    await assert_ledger_clean(pool)


@pytest.mark.parametrize("kind", ["payin", "payout"])
async def test_a_charge_pending_past_its_deadline_goes_to_needs_attention(router_api, router_settings, pool, book,
                                                                         sims, kind):
    """rt_a keeps `tok_card_pending` charges processing; the order is asked again with backoff
    and, past PAYCELL_PSP_PENDING_DEADLINE_S (2 s here), goes to needs_attention. A pay-out keeps
    its reserve."""
    user = new_user()
    await attach_on(router_api, router_settings, user, "tok_card_pending", "card", "rt_a")
    if kind == "payout":
        await fund_wallet(pool, book, user, 50_00)
        payment_id = await pay_out(router_api, router_settings, user, "tok_card_pending", amount="20.00")
    else:
        payment_id = await pay_in(router_api, router_settings, user, "tok_card_pending", amount="20.00")
    view = await finished(router_api, router_settings, user, payment_id, timeout_s=20)
    assert (view["status"], view["failure_code"]) == ("needs_attention", "psp_pending_deadline")
    polls = [e for e in view["events"] if e["type"] == "order.psp_pending"]
    assert 2 <= len(polls) <= 6, len(polls)  # 200, 400, 800, 800 ms ... within 2 s, not a poll every 200 ms
    async with pool.acquire() as conn:
        hold = await conn.fetchval(
            """SELECT coalesce(sum(balance_minor), 0) FROM account WHERE code = $1 AND currency = 'USD'""",
            f"payout_hold:{user}")
    assert hold == (20_00 if kind == "payout" else 0)
    await assert_ledger_clean(pool)


def test_polls_back_off_exponentially_up_to_the_maximum_and_stop_at_the_deadline(router_settings):
    s = router_settings  # 200 ms first, 800 ms at most
    assert [poll_delay_ms(s, n, until_deadline_s=60) for n in range(5)] == [200, 400, 800, 800, 800]
    assert poll_delay_ms(s, 3, until_deadline_s=0.25) == 251
    assert poll_delay_ms(s, 3, until_deadline_s=-5) == 1


async def test_the_sweeper_applies_the_pending_deadline_too(router_settings, pool):
    """An order left pending past its deadline with nobody asking (its message lost) gets the
    same failure code from the sweeper."""
    user = new_user()
    async with pool.acquire() as conn, conn.transaction():
        order_id = await new_order(conn, user, "payin", 3_00, instrument="tok_card_pending")
        order = await lock_by_id(conn, order_id)
        await payments.move(conn, order, "psp_submitting", event="order.psp_submitting", psp="rt_a", attempt=1)
        past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)
        await payments.move(conn, order, "psp_pending", event="order.psp_pending", psp_reference="ch_x",
                            deadline_at=past, lease_until=past)
    broker = build_broker(router_settings)
    for _ in range(20):  # other tests' expired leases may come first in a batch
        await sweep_once(pool, broker, router_settings, limit=100)
        state = await pool.fetchrow("SELECT payment_order_status, failure_code FROM payment_order "
                                    "WHERE payment_order_id = $1", uuid.UUID(order_id))
        if state["payment_order_status"] != "psp_pending":
            break
        await asyncio.sleep(0.1)
    assert tuple(state) == ("needs_attention", "psp_pending_deadline")
    await assert_ledger_clean(pool)
