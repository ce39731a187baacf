"""Reversals (issue 13): an operator refunds a completed pay-in, whole or in part, or recalls a
pay-out; the reversal policy reverses at the PSP a payment whose settlement posting failed past
its retries. Every reversal is its own record, made once at the PSP (its id is the provider's
idempotency key, its status asked after an unknown outcome), and compensated by a new ledger
transaction. Real Postgres, Redis, worker and the test simulator over HTTP; every test that moves
money ends with the ledger invariants."""
from __future__ import annotations

import asyncio
import datetime
import uuid

import aiohttp
import asyncpg
import pytest

from paycell.actors.broker import send
from paycell.actors.charge import charge_for
from paycell.config import load
from paycell.psp.base import Reversal
from paycell.queues import open_queues
from paycell.psp.registry import adapter_for
from paycell.reversals import policy
from paycell.reversals.request import reverse_payment
from paycell.store import payments
from paycell.store import reversals as store
from paycell.sweeper import sweep_once
from tests.helpers import (assert_ledger_clean, auth_header, new_order, new_user, operator_header, pay, postings_of,
                           sim_post, wait_until, wallet)
from tests.helpers import lock_by_id, read_by_id, state_by_id


def _path(payment_id: str) -> str:
    return f"/payments/payment/v1/{payment_id}/reversals"


async def _reverse(api, settings, user: str, payment_id: str, amount: str, *, currency: str = "USD",
                   key: str | None = None, reason: str = "customer asked", headers=None) -> tuple[int, dict]:
    resp = await api.post(_path(payment_id), json={"user_id": user, "amount": amount, "currency": currency,
                                                   "reason": reason},
                          headers=(headers or operator_header(settings)) | {"Idempotency-Key": key or uuid.uuid4().hex})
    return resp.status, await resp.json()


async def _reversal_ended(api, settings, user: str, payment_id: str, reversal_id: str, *, timeout_s: float = 30) -> dict:
    async def ended():
        resp = await api.get(_path(payment_id), params={"user_id": user}, headers=operator_header(settings))
        assert resp.status == 200, resp.status
        found = next(r for r in (await resp.json())["data"] if r["reversal_id"] == reversal_id)
        return found if found["status"] in ("succeeded", "failed", "needs_attention") else None
    found = await wait_until(ended, timeout_s=timeout_s, interval_s=0.1)
    assert found, f"reversal {reversal_id} did not end within {timeout_s} s"
    return found


async def _paid(api, settings, user: str, amount: str, token: str = "tok_card_ok") -> dict:
    status, body = await pay(api, settings, user, token, f"wallet:{user}", amount, "card", wait_s=10)
    assert status == 201 and body["status"] == "succeeded", (status, body)
    return body


async def _payment(api, settings, user: str, payment_id: str) -> dict:
    resp = await api.get(f"/payments/payment/v1/{payment_id}", headers=auth_header(settings, user))
    assert resp.status == 200
    return await resp.json()


async def _sim_refunds(sim_url: str, order_id: str) -> list[dict]:
    async with aiohttp.ClientSession() as s, s.get(f"{sim_url}/v1/charges/{order_id}/refunds") as r:
        return await r.json()


@pytest.mark.usefixtures("worker")
async def test_an_operator_refunds_part_then_the_rest_of_a_payin_and_its_user_sees_both(api, settings, pool, psp_sim):
    user = new_user()
    paid = await _paid(api, settings, user, "10.00")
    order_id = paid["orders"][0]["payment_order_id"]

    status, first = await _reverse(api, settings, user, paid["payment_id"], "4.00")
    assert status == 201 and first["status"] == "requested" and first["origin"] == "operator", first
    assert (await _reversal_ended(api, settings, user, paid["payment_id"], first["reversal_id"]))["status"] == "succeeded"
    seen = await _payment(api, settings, user, paid["payment_id"])
    assert (seen["status"], seen["refunded"]) == ("partially_refunded", "4.00")
    assert await wallet(api, settings, user) == {"USD": ("6.00", "0.00")}
    succeeded = [e for e in seen["events"] if e["type"] == "reversal.succeeded"]
    assert [(e["data"]["amount"], e["data"]["reversal_id"]) for e in succeeded] == [("4.00", first["reversal_id"])]
    assert "reason" not in next(e for e in seen["events"] if e["type"] == "reversal.requested")["data"]

    status, rest = await _reverse(api, settings, user, paid["payment_id"], "6.00")
    assert status == 201, rest
    assert (await _reversal_ended(api, settings, user, paid["payment_id"], rest["reversal_id"]))["status"] == "succeeded"
    seen = await _payment(api, settings, user, paid["payment_id"])
    assert (seen["status"], seen["refunded"]) == ("refunded", "10.00")
    assert await wallet(api, settings, user) == {"USD": ("0.00", "0.00")}
    assert sorted(r["amount_minor"] for r in await _sim_refunds(psp_sim, order_id)) == [4_00, 6_00]
    assert await postings_of(pool, order_id) == ["payin_settle", "payin_refund", "payin_refund"]

    status, more = await _reverse(api, settings, user, paid["payment_id"], "0.01")
    assert (status, more["error"]["code"]) == (422, "amount_exceeds_remaining")
    await assert_ledger_clean(pool)


@pytest.mark.usefixtures("worker")
async def test_a_refund_the_wallet_cannot_cover_books_the_shortfall_as_receivable(api, settings, pool):
    user, payee = new_user(), new_user("payee")
    paid = await _paid(api, settings, user, "10.00")
    from tests.helpers import post_transfer
    await post_transfer(pool, user, payee, 7_00)
    status, body = await _reverse(api, settings, user, paid["payment_id"], "5.00")
    assert status == 201, body
    assert (await _reversal_ended(api, settings, user, paid["payment_id"], body["reversal_id"]))["status"] == "succeeded"
    legs = await pool.fetch("""SELECT a.code, e.amount_minor FROM ledger_entry e JOIN account a USING (account_id)
                                JOIN ledger_transaction t USING (transaction_id)
                               WHERE t.payment_order_id = $1 AND t.kind = 'payin_refund'""",
                            uuid.UUID(paid["orders"][0]["payment_order_id"]))
    assert {r["code"]: r["amount_minor"] for r in legs} == {f"wallet:{user}": -3_00, "receivable:returns": -2_00,
                                                           "psp_clearing:test": 5_00}
    assert await wallet(api, settings, user) == {"USD": ("0.00", "0.00")}
    await assert_ledger_clean(pool)


@pytest.mark.usefixtures("worker")
async def test_refused_reversals_say_why_and_write_nothing(api, settings, pool):
    user = new_user()
    paid = await _paid(api, settings, user, "10.00")
    pid = paid["payment_id"]
    status, declined = await pay(api, settings, user, "tok_card_decline", f"wallet:{user}", "3.00", "card", wait_s=10)
    assert declined["status"] == "failed"

    cases = [
        (await _reverse(api, settings, user, pid, "1.00", currency="EUR"), 422, "currency_mismatch"),
        (await _reverse(api, settings, user, pid, "10.01"), 422, "amount_exceeds_remaining"),
        (await _reverse(api, settings, user, pid, "0.00"), 422, "amount_not_positive"),
        (await _reverse(api, settings, user, declined["payment_id"], "1.00"), 409, "payment_not_reversible"),
        (await _reverse(api, settings, new_user(), pid, "1.00"), 404, "not_found"),
        (await _reverse(api, settings, user, pid, "1.00", headers=auth_header(settings, user)), 403, "forbidden"),
    ]
    for (status, body), want_status, want_code in cases:
        assert (status, body["error"]["code"]) == (want_status, want_code), body
    assert await pool.fetchval("SELECT count(*) FROM payment_reversal WHERE user_id = $1", user) == 0

    resp = await api.post(_path(pid), json={"user_id": user, "amount": "1.00", "currency": "USD", "reason": "x"},
                          headers=operator_header(settings))
    assert (resp.status, (await resp.json())["error"]["code"]) == (400, "invalid_request")  # no Idempotency-Key

    key = uuid.uuid4().hex
    first = await _reverse(api, settings, user, pid, "1.00", key=key)
    again = await _reverse(api, settings, user, pid, "1.00", key=key)
    other = await _reverse(api, settings, user, pid, "2.00", key=key)
    assert first[0] == 201 and again[0] == 200 and again[1]["reversal_id"] == first[1]["reversal_id"]
    assert (other[0], other[1]["error"]["code"]) == (422, "idempotency_key_reused")
    assert await pool.fetchval("SELECT count(*) FROM payment_reversal WHERE user_id = $1", user) == 1
    await _reversal_ended(api, settings, user, pid, first[1]["reversal_id"])
    await assert_ledger_clean(pool)


@pytest.mark.usefixtures("worker")
async def test_concurrent_reversals_of_one_payment_never_exceed_its_amount(api, settings, pool, psp_sim):
    user = new_user()
    paid = await _paid(api, settings, user, "10.00")
    pid, order_id = paid["payment_id"], paid["orders"][0]["payment_order_id"]
    results = await asyncio.gather(*(_reverse(api, settings, user, pid, "3.00") for _ in range(10)))
    accepted = [body for status, body in results if status == 201]
    assert len(accepted) == 3
    assert sorted(b["error"]["code"] for s, b in results if s != 201) == ["amount_exceeds_remaining"] * 7
    for body in accepted:
        assert (await _reversal_ended(api, settings, user, pid, body["reversal_id"]))["status"] == "succeeded"
    assert sum(r["amount_minor"] for r in await _sim_refunds(psp_sim, order_id)) == 9_00
    assert (await _payment(api, settings, user, pid))["refunded"] == "9.00"
    await assert_ledger_clean(pool)


@pytest.mark.usefixtures("worker")
async def test_a_refund_whose_answer_is_lost_is_asked_for_and_made_once(api, settings, pool, psp_sim):
    user = new_user()
    paid = await _paid(api, settings, user, "10.00")
    order_id = paid["orders"][0]["payment_order_id"]
    assert (await sim_post(psp_sim, "/_sim/faults", {"drop_after_charge": 1}))[0] == 200
    try:
        status, body = await _reverse(api, settings, user, paid["payment_id"], "2.50")
        assert status == 201
        ended = await _reversal_ended(api, settings, user, paid["payment_id"], body["reversal_id"])
    finally:
        async with aiohttp.ClientSession() as s:
            await s.delete(f"{psp_sim}/_sim/faults")
    assert ended["status"] == "succeeded", ended
    assert [r["amount_minor"] for r in await _sim_refunds(psp_sim, order_id)] == [2_50]
    attempts = await pool.fetchval("SELECT attempt FROM payment_reversal WHERE user_id = $1", user)
    assert attempts >= 2  # the first answer was lost; a later attempt asked, and found it
    await assert_ledger_clean(pool)


@pytest.mark.usefixtures("worker")
async def test_a_refund_the_psp_refuses_fails_and_leaves_the_amount_reversible(api, settings, pool, psp_sim):
    user = new_user()
    paid = await _paid(api, settings, user, "8.00", token="tok_card_norefund")
    status, body = await _reverse(api, settings, user, paid["payment_id"], "8.00")
    assert status == 201
    ended = await _reversal_ended(api, settings, user, paid["payment_id"], body["reversal_id"])
    assert (ended["status"], ended["failure_code"]) == ("failed", "refund_declined")
    seen = await _payment(api, settings, user, paid["payment_id"])
    assert (seen["status"], seen["refunded"]) == ("succeeded", "0.00")
    assert await wallet(api, settings, user) == {"USD": ("8.00", "0.00")}
    assert (await _reverse(api, settings, user, paid["payment_id"], "8.00"))[0] == 201  # nothing was taken
    await assert_ledger_clean(pool)


async def test_a_crash_between_the_psp_and_the_posting_is_posted_once_when_the_sweeper_sends_it_again(
        api, settings, pool, psp_sim, broker, worker):
    """The step recorded its attempt and the PSP refunded, then the worker died before the outcome
    was recorded: the sweeper sends `reverse` again once the lease ran out, which asks the PSP,
    finds the refund and posts it; no second refund."""
    user = new_user()
    paid = await _paid(api, settings, user, "10.00")
    pid, order_id = paid["payment_id"], paid["orders"][0]["payment_order_id"]
    reversal, created = await reverse_payment(pool, settings, user_id=user, payment_id=pid, amount_minor=3_00,
                                              currency="USD", reason="crash test", requested_by="ops-test",
                                              request_key=uuid.uuid4().hex)
    assert created  # recorded, never sent to the worker: the test is the step until its crash
    async with pool.acquire() as conn, conn.transaction():
        await lock_by_id(conn, order_id)
        locked = await store.lock(conn, user, reversal.reversal_id)
        past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)
        await store.move(conn, locked, "psp_submitting", event="reversal.psp_submitting", attempt=1, lease_until=past)
        order = await lock_by_id(conn, order_id)
    psp = adapter_for("test", settings)
    try:
        result = await psp.reverse(Reversal(idempotency_key=reversal.reversal_id, charge=charge_for(order),
                                            amount_minor=3_00, currency="USD"))
    finally:
        await psp.close()
    assert result.status == "succeeded"
    assert await postings_of(pool, order_id) == ["payin_settle"]  # the crash: nothing recorded

    async def posted():
        await sweep_once(pool, broker, settings)
        found = await pool.fetchval("SELECT state FROM payment_reversal WHERE user_id = $1", user)
        return found == "succeeded"
    assert await wait_until(posted, timeout_s=30, interval_s=0.3)
    assert await postings_of(pool, order_id) == ["payin_settle", "payin_refund"]
    assert [r["amount_minor"] for r in await _sim_refunds(psp_sim, order_id)] == [3_00]
    assert (await _payment(api, settings, user, pid))["refunded"] == "3.00"
    await assert_ledger_clean(pool)


async def _psp_succeeded_unpostable(pool, settings, kind: str) -> tuple[str, str]:
    """An order the PSP charged (at the test simulator) whose settlement the ledger refuses: a
    pay-in of a user id no wallet may have, a pay-out that was never reserved. (user, order id)"""
    if kind == "payin":
        user, instrument, option = f"bad user {uuid.uuid4().hex[:6]}", "tok_card_ok", "card"
    else:
        user, instrument, option = new_user(), "tok_bank_ok", "bank_account"
    async with pool.acquire() as conn, conn.transaction():
        order_id = await new_order(conn, user, kind, 6_00, instrument=instrument, option=option)
        order = await lock_by_id(conn, order_id)
        await payments.move(conn, order, "psp_submitting", event="order.psp_submitting", psp="test", attempt=1)
    psp = adapter_for("test", settings)
    try:
        result = await psp.submit(charge_for(order))
    finally:
        await psp.close()
    assert result.status == "succeeded"
    async with pool.acquire() as conn, conn.transaction():
        order = await lock_by_id(conn, order_id)
        await payments.move(conn, order, "psp_succeeded", event="order.posting_failed",
                            psp_reference=result.psp_reference, lease_until=payments.lease(60))
    return user, order_id


@pytest.mark.parametrize("kind", ["payin", "payout"])
async def test_a_settlement_the_ledger_refuses_past_its_retries_is_reversed_at_the_psp(pool, settings, broker, worker,
                                                                                       psp_sim, kind):
    """The seed's edge cases 6 and 7 under the default policy (ledger_refused: reverse): `settle`
    fails until its retries run out, the dead-letter actor moves the order to `reversing` and
    records its reversal, `reverse` refunds (recalls) it at the PSP, and the order ends `reversed`.
    Nothing of the payment was posted, so nothing is compensated."""
    user, order_id = await _psp_succeeded_unpostable(pool, settings, kind)
    send(broker, "settle", user, order_id)

    async def reversed_():
        return await state_by_id(pool, order_id) in ("reversed", "needs_attention")
    assert await wait_until(reversed_, timeout_s=40, interval_s=0.2)
    assert await state_by_id(pool, order_id) == "reversed"
    row = await pool.fetchrow("SELECT origin, requested_by, state, amount_minor FROM payment_reversal "
                              "WHERE user_id = $1", user)
    assert dict(row) == {"origin": "policy", "requested_by": "policy:ledger_refused", "state": "succeeded",
                         "amount_minor": 6_00}
    assert [r["amount_minor"] for r in await _sim_refunds(psp_sim, order_id)] == [6_00]
    assert await postings_of(pool, order_id) == []
    events = [r["type"] for r in await pool.fetch("SELECT type FROM event WHERE payment_order_id = $1 "
                                                   "ORDER BY event_id", uuid.UUID(order_id))]
    assert events[-4:] == ["reversal.requested", "reversal.psp_submitting", "reversal.succeeded", "order.reversed"]
    assert "order.reversing" in events
    assert await pool.fetchval("SELECT status FROM payment_request WHERE user_id = $1", user) == "reversed"
    await assert_ledger_clean(pool)


def test_the_policy_names_the_failure_kind_and_follows_the_setting():
    assert policy.failure_kind("paycell.errors.LedgerError: payment order x does not justify") == "ledger_refused"
    assert policy.failure_kind("asyncpg.exceptions.ConnectionDoesNotExistError: connection was closed") \
        == "ledger_unavailable"
    assert policy.failure_kind("KeyError: 'psp'") == "step_error"
    default = load({})
    assert [policy.action_for(default, k) for k in ("ledger_refused", "ledger_unavailable", "step_error")] \
        == ["reverse", "human", "human"]
    human = load({"PAYCELL_REVERSAL_POLICY": "ledger_refused:human"})
    assert policy.action_for(human, "ledger_refused") == "human"


async def test_the_database_refuses_a_reversal_beyond_the_payment_or_of_an_order_not_completed(pool, settings):
    user = new_user()
    async with pool.acquire() as conn, conn.transaction():
        order_id = await new_order(conn, user, "payin", 5_00)
        from tests.helpers import settle_payin
        await settle_payin(conn, order_id)
    order = await read_by_id(pool, order_id)

    async def insert(amount_minor: int, currency: str = "USD") -> None:
        async with pool.acquire() as conn, conn.transaction():
            await store.insert(conn, user_id=user, reversal_id=str(uuid.uuid4()), payment_id=order.payment_id,
                               order_id=order_id, origin="operator", requested_by="ops", amount_minor=amount_minor,
                               currency=currency, reason="r", psp="test", lease_until=payments.lease(60))

    await insert(3_00)
    with pytest.raises(asyncpg.CheckViolationError, match="reversal_amount"):
        await insert(2_01)
    with pytest.raises(asyncpg.CheckViolationError, match="reversal_currency"):
        await insert(1_00, "EUR")
    async with pool.acquire() as conn, conn.transaction():
        pending = await new_order(conn, user, "payin", 5_00)
        await payments.move(conn, await lock_by_id(conn, pending), "psp_submitting",
                            event="order.psp_submitting", psp="test", attempt=1)
    pending_order = await read_by_id(pool, pending)
    with pytest.raises(asyncpg.CheckViolationError, match="reversal_state"):
        async with pool.acquire() as conn, conn.transaction():
            await store.insert(conn, user_id=user, reversal_id=str(uuid.uuid4()), payment_id=pending_order.payment_id,
                               order_id=pending, origin="operator", requested_by="ops", amount_minor=1_00,
                               currency="USD", reason="r", psp="test", lease_until=payments.lease(60))
    # A reversal the PSP has not been asked for justifies no posting.
    requested = (await store.for_payment(pool, user, order.payment_id))[0]
    from paycell.errors import LedgerError
    with pytest.raises(LedgerError, match="does not justify"):
        await store.post(pool, requested, system_slices=4)
    await assert_ledger_clean(pool)


@pytest.mark.usefixtures("worker")
async def test_the_cli_reverses_a_payment_once_however_often_it_is_run(api, settings, pool):
    import os
    import subprocess
    import sys

    def paycell(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([os.path.join(os.path.dirname(sys.executable), "paycell"), *args],
                              capture_output=True, text=True, timeout=60)

    user = new_user()
    paid = await _paid(api, settings, user, "12.34")
    pid = paid["payment_id"]
    args = ("payments", "reverse", pid, "--user", user, "--amount", "2.34", "--currency", "USD",
            "--reason", "goodwill", "--as", "ops-cli")
    first = await asyncio.to_thread(paycell, *args)
    assert first.returncode == 0 and first.stdout.startswith("recorded "), first.stdout + first.stderr
    again = await asyncio.to_thread(paycell, *args)
    assert again.returncode == 0 and again.stdout.startswith("already recorded "), again.stdout + again.stderr
    too_much = await asyncio.to_thread(paycell, "payments", "reverse", pid, "--user", user, "--amount", "10.01",
                                       "--currency", "USD", "--reason", "more", "--as", "ops-cli")
    assert too_much.returncode == 1 and "amount_exceeds_remaining" in too_much.stderr, too_much.stderr
    other = await asyncio.to_thread(paycell, "payments", "reverse", pid, "--user", user, "--amount", "1.00",
                                    "--currency", "EUR", "--reason", "x", "--as", "ops-cli")
    assert other.returncode == 1 and "currency_mismatch" in other.stderr, other.stderr
    reversal_id = first.stdout.split()[1]
    assert (await _reversal_ended(api, settings, user, pid, reversal_id))["status"] == "succeeded"
    listed = await asyncio.to_thread(paycell, "payments", "reversals", pid, "--user", user)
    assert listed.returncode == 0 and "succeeded" in listed.stdout and "1 reversal(s)" in listed.stdout, listed.stdout
    assert (await _payment(api, settings, user, pid))["refunded"] == "2.34"
    await assert_ledger_clean(pool)


@pytest.fixture
async def ctx(migrated, pool):
    from paycell.actors import context
    from paycell.actors.broker import build_broker
    from tests.api.conftest import parked

    broker = build_broker(parked(migrated))
    yield context.Context(parked(migrated), pool, broker)
    broker.close()


async def _completed_with_reversal(pool, settings, *, amount_minor: int, reversed_minor: int,
                                   sent: bool) -> tuple[str, str, store.Reversal]:
    """A completed pay-in on the test connector and an operator's reversal of part of it, recorded
    (and, when `sent`, moved to psp_submitting as the step does before it asks the PSP)."""
    from tests.helpers import settle_payin

    user = new_user()
    async with pool.acquire() as conn, conn.transaction():
        order_id = await new_order(conn, user, "payin", amount_minor)
        await settle_payin(conn, order_id)
    order = await read_by_id(pool, order_id)
    reversal, _ = await reverse_payment(pool, settings, user_id=user, payment_id=order.payment_id,
                                        amount_minor=reversed_minor, currency="USD", reason="test",
                                        requested_by="ops-test", request_key=uuid.uuid4().hex)
    if sent:
        async with pool.acquire() as conn, conn.transaction():
            await lock_by_id(conn, order_id)
            locked = await store.lock(conn, user, reversal.reversal_id)
            await store.move(conn, locked, "psp_submitting", event="reversal.psp_submitting", attempt=1,
                             lease_until=payments.lease(60))
    return user, order_id, reversal


async def _apply_event(pool, ctx, event) -> None:
    import msgspec

    from paycell.actors.apply_event import apply
    from paycell.store import inbox

    async with pool.acquire() as conn, conn.transaction():
        await inbox.store(conn, "test", [event], msgspec.json.encode(event), retry_s=30)
    await apply(ctx, "test", event.event_id)


async def test_a_providers_word_on_a_reversal_is_recorded_once_and_a_contradiction_held(pool, settings, ctx):
    """Adyen ends a refund only in its REFUND notification: a `reversal` event, applied as the
    step records the PSP's answer; the same word again agrees; another word is held for a human."""
    from paycell.psp.base import ReversalResult, WebhookEvent

    user, order_id, reversal = await _completed_with_reversal(pool, settings, amount_minor=8_00,
                                                              reversed_minor=5_00, sent=True)

    def word(status: str) -> WebhookEvent:
        return WebhookEvent(event_id=f"evt_{uuid.uuid4().hex}", kind="reversal", type="REFUND", order_id=order_id,
                            reversal_id=reversal.reversal_id, amount_minor=5_00, currency="USD",
                            reversal=ReversalResult(status=status, psp_reference="re_adyen",
                                                    failure_code="refund_failed" if status == "failed" else None))

    await _apply_event(pool, ctx, word("succeeded"))
    await _apply_event(pool, ctx, word("succeeded"))
    await _apply_event(pool, ctx, word("failed"))
    results = [r["result"] for r in await pool.fetch(
        "SELECT result FROM psp_event WHERE applied_order_id = $1 ORDER BY received_at", uuid.UUID(order_id))]
    assert results == ["applied", "agrees", "held"]
    assert (await store.get(pool, user, reversal.reversal_id)).state == "succeeded"
    assert await postings_of(pool, order_id) == ["payin_settle", "payin_refund"]
    assert await pool.fetchval("SELECT status FROM payment_request WHERE user_id = $1", user) == "partially_refunded"
    await assert_ledger_clean(pool)


async def test_a_return_of_a_payment_paycell_has_refunded_is_left_to_a_human(pool, settings, ctx):
    """The provider's return (a chargeback) of a payment paycell already refunded in part must not
    post the whole amount back again: the order goes to needs_attention, nothing is posted."""
    from paycell.psp.base import WebhookEvent

    user, order_id, _ = await _completed_with_reversal(pool, settings, amount_minor=6_00, reversed_minor=2_00,
                                                       sent=False)
    await _apply_event(pool, ctx, WebhookEvent(event_id=f"evt_{uuid.uuid4().hex}", kind="returned", type="charge.returned",
                                              order_id=order_id, return_code="R10", amount_minor=6_00, currency="USD"))
    assert await state_by_id(pool, order_id) == "needs_attention"
    assert await postings_of(pool, order_id) == ["payin_settle"]
    await assert_ledger_clean(pool)


@pytest.mark.usefixtures("worker")
async def test_a_reversal_whose_psp_stays_down_waits_for_a_human_and_its_dead_letter_replays_it(
        api, settings, pool, psp_sim, broker, redis_client):
    from paycell import dlq

    user = new_user()
    paid = await _paid(api, settings, user, "10.00")
    order_id = paid["orders"][0]["payment_order_id"]
    assert (await sim_post(psp_sim, "/v1/outage", {"outage": True}))[0] == 200
    try:
        status, body = await _reverse(api, settings, user, paid["payment_id"], "4.00")
        assert status == 201
        ended = await _reversal_ended(api, settings, user, paid["payment_id"], body["reversal_id"])
    finally:
        await sim_post(psp_sim, "/v1/outage", {"outage": False})
    assert (ended["status"], ended["failure_code"]) == ("needs_attention", "retries_exhausted"), ended
    assert await _sim_refunds(psp_sim, order_id) == []
    dead = await pool.fetchrow("SELECT dead_letter_id FROM dead_letter WHERE actor_name = 'reverse' "
                               "AND message->'args'->>1 = $1", body["reversal_id"])
    queues = open_queues(settings)
    try:
        assert await dlq.replay(pool, queues, broker, settings, str(dead["dead_letter_id"]))
    finally:
        queues.close()

    async def succeeded():
        return (await store.get(pool, user, body["reversal_id"])).state == "succeeded"
    assert await wait_until(succeeded, timeout_s=30, interval_s=0.2)
    assert [r["amount_minor"] for r in await _sim_refunds(psp_sim, order_id)] == [4_00]
    assert (await _payment(api, settings, user, paid["payment_id"]))["refunded"] == "4.00"
    await assert_ledger_clean(pool)


@pytest.mark.usefixtures("worker")
async def test_an_operator_recalls_a_payout_whole_never_in_part(api, settings, pool, psp_sim):
    user = new_user()
    await _paid(api, settings, user, "20.00")
    status, payout = await pay(api, settings, user, f"wallet:{user}", "tok_bank_ok", "15.00", "bank_account", wait_s=10)
    assert status == 201 and payout["status"] == "succeeded", payout
    order_id = payout["orders"][0]["payment_order_id"]
    part = await _reverse(api, settings, user, payout["payment_id"], "5.00")
    assert (part[0], part[1]["error"]["code"]) == (422, "reversal_not_supported")
    status, body = await _reverse(api, settings, user, payout["payment_id"], "15.00")
    assert status == 201, body
    assert (await _reversal_ended(api, settings, user, payout["payment_id"], body["reversal_id"]))["status"] == "succeeded"
    seen = await _payment(api, settings, user, payout["payment_id"])
    assert (seen["status"], seen["refunded"]) == ("reversed", "15.00")
    assert await wallet(api, settings, user) == {"USD": ("20.00", "0.00")}
    assert await postings_of(pool, order_id) == ["payout_reserve", "payout_settle", "payout_reversal"]
    assert [r["amount_minor"] for r in await _sim_refunds(psp_sim, order_id)] == [15_00]
    await assert_ledger_clean(pool)
