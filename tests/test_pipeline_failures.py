"""Exactly once under failure: duplicate submits, duplicate and lost messages, a killed worker,
racing pay-outs, and retries that run out; on each broker (Redis and RabbitMQ: tests/broker_matrix.py)."""
from __future__ import annotations

import asyncio
import json
import time
import uuid

import asyncpg
import dramatiq
import pytest

from paycell.actors.broker import STEP_QUEUES, send
from paycell.sweeper import sweep_once
from tests.broker_matrix import api, broker, pipeline, worker  # noqa: F401 (fixtures: one run per broker)
from tests.helpers import (assert_ledger_clean, attach, auth_header, final_payment, new_user, pay, payment_body,
                           psp_stats, register, wait_until, wallet)


async def _event_count(pool, payment_id: str) -> int:
    return await pool.fetchval("SELECT count(*) FROM event WHERE payment_id = $1", uuid.UUID(payment_id))


async def _entry_count(pool, order_id: str) -> int:
    return await pool.fetchval(
        """SELECT count(*) FROM ledger_entry e JOIN ledger_transaction t USING (transaction_id)
            WHERE t.payment_order_id = $1""", uuid.UUID(order_id))


async def _sweep_until_done(pool, broker, settings, api, payments_, timeout_s: float = 60):
    """Run the sweeper (as the periodic actor would) until every payment left `processing`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        statuses = await pool.fetch("SELECT status FROM payment_request WHERE payment_id = ANY($1::uuid[])",
                                    [p["payment_id"] for p in payments_])
        if len(statuses) == len(payments_) and all(r["status"] != "processing" for r in statuses):
            return
        await sweep_once(pool, broker, settings)
        await asyncio.sleep(0.5)
    raise AssertionError("payments still processing after sweeping")


@pytest.mark.usefixtures("worker")
async def test_twenty_concurrent_identical_submits_make_one_payment_and_one_charge(api, settings, pool, psp_sim):
    user = new_user()
    await attach(api, settings, user, "tok_card_ok")
    body = payment_body(user, "tok_card_ok", f"wallet:{user}", "5.00", "card")
    headers = auth_header(settings, user)
    resps = await asyncio.gather(*(api.post("/payments/payment/v1", json=body, headers=headers) for _ in range(20)))
    originals = [r for r in resps if r.status in (201, 202) and "Idempotent-Replayed" not in r.headers]
    replays = [r for r in resps if r.headers.get("Idempotent-Replayed") == "true"]
    assert len(originals) == 1
    assert all(r.status in (201, 202, 409) for r in resps)
    assert len(originals) + len(replays) + sum(r.status == 409 for r in resps) == 20
    assert await pool.fetchval("SELECT count(*) FROM payment_request WHERE user_id = $1", user) == 1
    final = await final_payment(api, settings, user, body["payment_id"])
    assert final["status"] == "succeeded"
    assert await psp_stats(psp_sim, final["orders"][0]["payment_order_id"]) == {"submits": 1, "charged": True}
    assert await wallet(api, settings, user) == {"USD": ("5.00", "0.00")}
    await assert_ledger_clean(pool)


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize("kind", ["payin", "payout", "transfer"])
async def test_a_duplicate_message_for_each_step_changes_nothing(api, settings, pool, broker, psp_sim,
                                                                 pipeline, kind):
    user, other = new_user(), new_user()
    await register(api, settings, other)
    await pay(api, settings, user, "tok_card_ok", f"wallet:{user}", "10.00", "card", wait_s=10)
    src, dst, option = {"payin": ("tok_card_ok", f"wallet:{user}", "card"),
                        "payout": (f"wallet:{user}", "tok_bank_ok", "bank_account"),
                        "transfer": (f"wallet:{user}", f"wallet:{other}", "wallet")}[kind]
    status, body = await pay(api, settings, user, src, dst, "4.00", option)
    order_id = body["orders"][0]["payment_order_id"]
    send(broker, "screen", user, order_id)  # a duplicate while the first may still be in flight
    send(broker, "screen", user, order_id)
    final = await final_payment(api, settings, user, body["payment_id"])
    assert final["status"] == "succeeded"
    events, entries = await _event_count(pool, body["payment_id"]), await _entry_count(pool, order_id)
    for step in ("screen", "charge", "settle", "charge", "screen"):
        send(broker, step, user, order_id)
    assert await wait_until(pipeline.drained, timeout_s=20)
    assert await _event_count(pool, body["payment_id"]) == events
    assert await _entry_count(pool, order_id) == entries
    if kind != "transfer":
        assert (await psp_stats(psp_sim, order_id))["submits"] == 1
    expected = {"payin": "14.00", "payout": "6.00", "transfer": "6.00"}[kind]
    assert (await wallet(api, settings, user))["USD"] == (expected, "0.00")
    await assert_ledger_clean(pool)


async def test_lost_messages_are_recovered_by_the_sweeper(api, settings, pool, broker, worker, pipeline):
    worker.stop()
    try:
        users = [new_user() for _ in range(5)]
        accepted = [(await pay(api, settings, u, "tok_card_ok", f"wallet:{u}", "2.00", "card"))[1] for u in users]
        pipeline.lose_everything()  # every queued message is gone
    finally:
        worker.start()
    await asyncio.sleep(0.5)
    assert {r["status"] for r in await pool.fetch(
        "SELECT status FROM payment_request WHERE payment_id = ANY($1::uuid[])",
        [a["payment_id"] for a in accepted])} == {"processing"}
    await _sweep_until_done(pool, broker, settings, api, accepted)
    for a in accepted:
        assert (await final_payment(api, settings, a["user_id"], a["payment_id"]))["status"] == "succeeded"
    await assert_ledger_clean(pool)


async def test_a_worker_killed_mid_step_loses_nothing_and_charges_once(api, settings, pool, broker, worker,
                                                                      psp_sim):
    users = [new_user() for _ in range(8)]
    tokens = ["tok_card_ok", "tok_card_slow", "tok_card_flaky", "tok_bank_ok"]
    options = {"tok_card_ok": "card", "tok_card_slow": "card", "tok_card_flaky": "card", "tok_bank_ok": "bank_account"}
    accepted = []
    for i, u in enumerate(users):
        for t in tokens[:2] if i % 2 else tokens[2:]:
            accepted.append((await pay(api, settings, u, t, f"wallet:{u}", "3.00", options[t]))[1])
    await asyncio.sleep(0.3)  # let the worker get into the PSP calls
    worker.kill()
    worker.start()
    await _sweep_until_done(pool, broker, settings, api, accepted)
    for a in accepted:
        final = await final_payment(api, settings, a["user_id"], a["payment_id"])
        assert final["status"] == "succeeded", final
        assert (await psp_stats(psp_sim, final["orders"][0]["payment_order_id"]))["charged"] is True
    for u in users:
        assert await wallet(api, settings, u) == {"USD": ("6.00", "0.00")}
    await assert_ledger_clean(pool)


@pytest.mark.usefixtures("worker")
async def test_concurrent_payouts_never_overdraw_the_wallet(api, settings, pool):
    user = new_user()
    await pay(api, settings, user, "tok_card_ok", f"wallet:{user}", "100.00", "card", wait_s=10)
    results = await asyncio.gather(*(pay(api, settings, user, f"wallet:{user}", "tok_bank_ok", "10.00",
                                         "bank_account", wait_s=10) for _ in range(20)))
    finals = [await final_payment(api, settings, user, b["payment_id"]) for _, b in results]
    assert sum(f["status"] == "succeeded" for f in finals) == 10
    assert [f["failure_code"] for f in finals if f["status"] == "failed"] == ["insufficient_funds"] * 10
    assert await wallet(api, settings, user) == {"USD": ("0.00", "0.00")}
    await assert_ledger_clean(pool)


@pytest.mark.usefixtures("worker")
async def test_retries_exhausted_dead_letter_the_message_and_flag_the_order(api, settings, pool, pipeline,
                                                                           broker):
    from paycell import dlq

    user = new_user()
    await pay(api, settings, user, "tok_card_ok", f"wallet:{user}", "10.00", "card", wait_s=10)
    status, body = await pay(api, settings, user, f"wallet:{user}", "tok_bank_down", "4.00", "bank_account")
    final = await final_payment(api, settings, user, body["payment_id"])
    assert final["status"] == "needs_attention" and final["failure_code"] == "retries_exhausted", final
    order_id = final["orders"][0]["payment_order_id"]
    # The PSP never answered: the reserve stays held until a human (or reconciliation) resolves it.
    assert await wallet(api, settings, user) == {"USD": ("6.00", "4.00")}
    dead = await pool.fetchrow("SELECT * FROM dead_letter WHERE payment_order_id = $1", uuid.UUID(order_id))
    assert dead["actor_name"] == "charge" and "PSP" in dead["error"]
    in_broker = {m["broker_id"] for m in pipeline.in_dead_letter_queue() if m["order_id"] == order_id}
    assert in_broker
    listed = await dlq.list_all(pool, pipeline.queues)
    assert any(d.order_id == order_id and d.in_broker and d.id == str(dead["dead_letter_id"]) for d in listed)
    # Replay: the order is reopened where it was left and retried again (and fails again here, as a
    # new message); the replayed one leaves the broker's dead-letter queue.
    assert await dlq.replay(pool, pipeline.queues, broker, settings, str(dead["dead_letter_id"]))
    assert not await dlq.replay(pool, pipeline.queues, broker, settings, str(dead["dead_letter_id"]))
    assert not in_broker & {m["broker_id"] for m in pipeline.in_dead_letter_queue()}

    async def flagged_again():
        n = await pool.fetchval("SELECT count(*) FROM event WHERE payment_order_id = $1 AND type = $2",
                                uuid.UUID(order_id), "order.needs_attention")
        return n == 2
    assert await wait_until(flagged_again, timeout_s=30)
    types = [e["type"] for e in (await final_payment(api, settings, user, body["payment_id"]))["events"]]
    assert "order.reopened" in types
    await assert_ledger_clean(pool)


@pytest.mark.usefixtures("worker")
async def test_every_log_line_of_a_step_carries_the_payment_id(api, settings, pool, worker):
    user = new_user()
    status, body = await pay(api, settings, user, "tok_card_ok", f"wallet:{user}", "1.00", "card", wait_s=10)
    with open(worker.log_path) as f:
        lines = [json.loads(line) for line in f if line.startswith("{") and body["payment_id"] in line]
    events = {line["event"] for line in lines}
    assert {"psp.outcome"} <= events
    assert all(line["payment_id"] == body["payment_id"] and line["order_id"] for line in lines)
    await assert_ledger_clean(pool)


async def _parked_payin(pool, settings, pipeline, api, worker, user: str, amount: str) -> dict:
    """A pay-in accepted while no worker runs, its queued message dropped: it sits in `requested`."""
    worker.stop()
    try:
        status, body = await pay(api, settings, user, "tok_card_ok", f"wallet:{user}", amount, "card")
        assert status == 202
        pipeline.drop_payment_messages()
    finally:
        worker.start()
    return body


def _old_form(step: str, order_id: str) -> dramatiq.Message:
    """A message of `step` as paycell sent it before the order's key carried the user: the order id alone."""
    return dramatiq.Message(queue_name=STEP_QUEUES[step], actor_name=step, args=(order_id,), kwargs={}, options={})


async def test_a_message_of_the_old_one_id_form_still_completes_its_payment(api, settings, pool, broker, worker,
                                                                            pipeline):
    """A `screen` message in flight across the deploy carries the order id alone: the step looks
    its owner up (payments.order_key) and the payment completes, its next steps sent with the key."""
    user = new_user()
    body = await _parked_payin(pool, settings, pipeline, api, worker, user, "7.00")
    order_id = body["orders"][0]["payment_order_id"]
    broker.enqueue(_old_form("screen", order_id))
    final = await final_payment(api, settings, user, body["payment_id"])
    assert final["status"] == "succeeded" and final["orders"][0]["payment_order_id"] == order_id, final
    assert await wallet(api, settings, user) == {"USD": ("7.00", "0.00")}
    await assert_ledger_clean(pool)


async def test_a_dead_letter_of_the_old_one_id_form_is_recorded_and_its_replay_completes_the_payment(
        api, settings, pool, broker, worker, pipeline):
    """A `screen` message of the old form whose retries ran out (what Dramatiq hands
    record_dead_letter: the message and its retries) flags its order, found by its owner; replayed
    by an operator, the order is reopened and sent on with its key, and the payment completes."""
    from paycell import dlq

    user = new_user()
    body = await _parked_payin(pool, settings, pipeline, api, worker, user, "8.00")
    order_id = body["orders"][0]["payment_order_id"]
    old = _old_form("screen", order_id).asdict()
    old["options"] = {"traceback": "Traceback (most recent call last):\nTransient: lost before the deploy"}
    broker.enqueue(dramatiq.Message(queue_name=STEP_QUEUES["record_dead_letter"], actor_name="record_dead_letter",
                                    args=(old, {"retries": settings.retries_max}), kwargs={}, options={}))

    async def flagged():
        return await pool.fetchrow("SELECT dead_letter_id, payment_order_id::text FROM dead_letter "
                                   "WHERE message_id = $1", old["message_id"])
    dead = await wait_until(flagged, timeout_s=20)
    assert dead is not None and dead["payment_order_id"] == order_id
    flagged_final = await final_payment(api, settings, user, body["payment_id"])
    assert flagged_final["status"] == "needs_attention" and flagged_final["failure_code"] == "retries_exhausted"
    assert await dlq.replay(pool, pipeline.queues, broker, settings, str(dead["dead_letter_id"]), by="ops-old")
    final = await final_payment(api, settings, user, body["payment_id"])
    assert final["status"] == "succeeded", final
    assert "order.reopened" in [e["type"] for e in final["events"]]
    await assert_ledger_clean(pool)


async def test_settle_posts_an_order_the_psp_already_charged(api, settings, pool, broker, worker, pipeline):
    """An order left in psp_succeeded (the ledger refused the inline posting) is posted by `settle`."""
    user = new_user()
    body = await _parked_payin(pool, settings, pipeline, api, worker, user, "6.00")
    order_id = body["orders"][0]["payment_order_id"]
    # Along the state table, as screen and charge would (the database refuses a jump).
    for state in ("psp_submitting", "psp_succeeded"):
        await pool.execute("""UPDATE payment_order SET payment_order_status = $2, psp = 'simulator',
                                     psp_reference = 'ch_test', attempt = 1 WHERE user_id = $3 AND payment_order_id = $1""",
                           uuid.UUID(order_id), state, user)
    send(broker, "settle", user, order_id)
    final = await final_payment(api, settings, user, body["payment_id"])
    assert final["status"] == "succeeded" and final["orders"][0]["ledger_updated"], final
    assert await wallet(api, settings, user) == {"USD": ("6.00", "0.00")}
    await assert_ledger_clean(pool)


async def test_an_order_past_its_deadline_needs_attention(api, settings, pool, broker, worker, pipeline):
    user = new_user()
    body = await _parked_payin(pool, settings, pipeline, api, worker, user, "2.00")
    # Time passing, played by the admin: the app role may not move an order's deadline.
    admin = await asyncpg.connect(settings.admin_database_url)
    try:
        await admin.execute("""UPDATE payment_order SET deadline_at = now() - interval '1 second',
                                      lease_until = now() - interval '1 second' WHERE payment_order_id = $1""",
                            uuid.UUID(body["orders"][0]["payment_order_id"]))
    finally:
        await admin.close()
    result = await sweep_once(pool, broker, settings)
    assert result.overdue >= 1
    final = await final_payment(api, settings, user, body["payment_id"])
    assert final["status"] == "needs_attention" and final["failure_code"] == "deadline_exceeded", final
    assert await wallet(api, settings, user) in ({}, {"USD": ("0.00", "0.00")})
    await assert_ledger_clean(pool)
