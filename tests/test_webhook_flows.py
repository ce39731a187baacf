"""Provider webhooks end to end (issue 7): the test simulator signs and delivers its events over real
HTTP to the API under test, which stores them; the Dramatiq worker applies them through the
order state table. requires_action then approval; the action deadline; duplicate, late and
out-of-order deliveries; a contradiction; late returns with and without a shortfall. Every test
ends with the ledger check."""
from __future__ import annotations

import uuid

import aiohttp
import pytest
from yarl import URL

from paycell.sweeper import sweep_once
from tests.helpers import (assert_ledger_clean, auth_header, final_payment, inbox_rows, new_user, pay, postings_of,
                           psp_stats, register, sim_post, wait_until, wallet)

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture
async def webhooks_to(api, psp_sim):
    """The simulator delivers its webhooks to this test's API; `configure(**options)` sets the
    outbox's misbehaviours (duplicate, out_of_order, paused ...). Off again afterwards."""
    url = str(api.make_url("/psp/webhooks/test"))

    async def configure(**options) -> None:
        status, _ = await sim_post(psp_sim, "/_sim/webhooks", {"url": url, **options})
        assert status == 200

    await configure()
    yield configure
    await sim_post(psp_sim, "/_sim/webhooks", {})


async def _status(api, settings, user: str, payment_id: str, wanted: str, *, timeout_s: float = 20) -> dict:
    """The payment once its status is `wanted` (polled: tests only)."""
    headers = auth_header(settings, user)

    async def reached():
        async with api.get(f"/payments/payment/v1/{payment_id}", headers=headers) as resp:
            body = await resp.json()
        return body if body["status"] == wanted else None

    body = await wait_until(reached, timeout_s=timeout_s, interval_s=0.1)
    assert body, f"payment {payment_id} is not {wanted} after {timeout_s}s"
    return body


async def _all_applied(pool, order_id: str, count: int, *, timeout_s: float = 20) -> list:
    async def done():
        rows = await inbox_rows(pool, order_id)
        return rows if len(rows) >= count and all(r["applied_at"] for r in rows) else None

    rows = await wait_until(done, timeout_s=timeout_s, interval_s=0.1)
    assert rows, await inbox_rows(pool, order_id)
    return rows


# -- requires_action ------------------------------------------------------------------------

async def test_requires_action_then_approval_then_success(api, settings, pool, psp_sim, webhooks_to):
    user = new_user()
    status, body = await pay(api, settings, user, "tok_card_action", f"wallet:{user}", "25.00", "card", wait_s=10)
    assert status == 201 and body["status"] == "requires_action", body
    order_id = body["orders"][0]["payment_order_id"]
    assert body["next_action"]["type"] == "redirect_to_url"
    action_url = body["next_action"]["url"]
    assert action_url.startswith(psp_sim) and order_id in action_url
    assert await wallet(api, settings, user) in ({}, {"USD": ("0.00", "0.00")})

    async with aiohttp.ClientSession() as customer:  # approves; never comes back: the webhook moves the order
        async with customer.get(action_url, allow_redirects=False) as resp:
            assert resp.status == 303

    done = await _status(api, settings, user, body["payment_id"], "succeeded")
    assert done["next_action"] is None and done["is_complete"]
    assert await wallet(api, settings, user) == {"USD": ("25.00", "0.00")}
    assert await psp_stats(psp_sim, order_id) == {"submits": 1, "charged": True}
    types = [e["type"] for e in done["events"]]
    assert types.index("order.requires_action") < types.index("order.customer_acted") < types.index("order.posted")
    rows = await _all_applied(pool, order_id, 3)
    assert {r["type"] for r in rows} >= {"charge.requires_action", "charge.approved", "charge.paid"}
    assert await postings_of(pool, order_id) == ["payin_settle"]
    await assert_ledger_clean(pool)


async def test_requires_action_continues_when_the_customer_comes_back_without_any_webhook(api, settings, pool,
                                                                                          psp_sim):
    user = new_user()
    status, body = await pay(api, settings, user, "tok_card_action", f"wallet:{user}", "12.00", "card", wait_s=10)
    assert body["status"] == "requires_action", body
    order_id = body["orders"][0]["payment_order_id"]
    async with aiohttp.ClientSession() as browser:
        async with browser.get(body["next_action"]["url"], allow_redirects=False) as resp:  # approves
            assert resp.status == 303
            back = URL(resp.headers["Location"])
    assert str(back.with_query(None)) == settings.psp_return_url and back.query["order_id"] == order_id
    assert back.query["user_id"] == user
    async with api.get(back.path_qs) as resp:  # the browser lands on paycell's return page
        assert resp.status == 200
    done = await _status(api, settings, user, body["payment_id"], "succeeded")
    assert await psp_stats(psp_sim, order_id) == {"submits": 1, "charged": True}
    assert await wallet(api, settings, user) == {"USD": ("12.00", "0.00")}
    assert done["next_action"] is None
    await assert_ledger_clean(pool)


@pytest.mark.parametrize("kind", ["payin", "payout"])
async def test_requires_action_past_its_deadline_fails_once_the_psp_says_nothing_was_charged(
        api, settings, pool, psp_sim, broker, kind):
    user = new_user()
    if kind == "payout":
        funded = await pay(api, settings, user, "tok_bank_ok", f"wallet:{user}", "30.00", "bank_account", wait_s=10)
        assert funded[0] == 201, funded
        status, body = await pay(api, settings, user, f"wallet:{user}", "tok_bank_action", "10.00", "bank_account",
                                 wait_s=10)
    else:
        status, body = await pay(api, settings, user, "tok_card_action", f"wallet:{user}", "10.00", "card", wait_s=10)
    assert status == 201 and body["status"] == "requires_action", body
    order_id = body["orders"][0]["payment_order_id"]
    if kind == "payout":
        assert await wallet(api, settings, user) == {"USD": ("20.00", "10.00")}  # reserved while it waits
    # The customer never acts; the deadline passes and the order's poll comes due.
    await pool.execute("""UPDATE payment_order SET action_expires_at = now() - interval '1 second',
                                                   lease_until = now() - interval '1 second'
                           WHERE payment_order_id = $1""", uuid.UUID(order_id))
    await sweep_once(pool, broker, settings)
    done = await _status(api, settings, user, body["payment_id"], "failed")
    assert done["failure_code"] == "action_expired" and done["next_action"] is None, done
    assert await psp_stats(psp_sim, order_id) == {"submits": 1, "charged": False}
    expected = {"payin": ({}, {"USD": ("0.00", "0.00")}), "payout": ({"USD": ("30.00", "0.00")},)}[kind]
    assert await wallet(api, settings, user) in expected
    await assert_ledger_clean(pool)


async def test_a_poll_before_the_deadline_keeps_the_order_waiting(api, settings, pool, psp_sim, broker):
    user = new_user()
    status, body = await pay(api, settings, user, "tok_card_action", f"wallet:{user}", "5.00", "card", wait_s=10)
    assert body["status"] == "requires_action", body
    order_id = body["orders"][0]["payment_order_id"]
    await pool.execute("UPDATE payment_order SET lease_until = now() - interval '1 second' WHERE payment_order_id = $1",
                       uuid.UUID(order_id))
    await sweep_once(pool, broker, settings)

    async def polled():
        return await pool.fetchval("""SELECT count(*) FROM event WHERE payment_order_id = $1
                                         AND type = 'order.requires_action_polled'""", uuid.UUID(order_id))
    assert await wait_until(polled)
    again = await _status(api, settings, user, body["payment_id"], "requires_action")
    assert again["next_action"]["url"] == body["next_action"]["url"]
    await assert_ledger_clean(pool)


# -- order of deliveries ----------------------------------------------------------------------

async def test_an_event_arriving_before_the_steps_own_answer_completes_the_order_once(api, settings, pool, psp_sim,
                                                                                    webhooks_to):
    """`slow`: the simulator charges and sends charge.paid at once, but answers the POST only after
    the client timed out; the webhook completes the order, the step's retry finds it done."""
    user = new_user()
    status, body = await pay(api, settings, user, "tok_card_slow", f"wallet:{user}", "8.00", "card")
    order_id = body["orders"][0]["payment_order_id"]
    done = await final_payment(api, settings, user, body["payment_id"])
    assert done["status"] == "succeeded", done
    rows = await _all_applied(pool, order_id, 1)
    assert [r["result"] for r in rows if r["type"] == "charge.paid"] in (["applied"], ["agrees"])
    assert await postings_of(pool, order_id) == ["payin_settle"]
    assert await psp_stats(psp_sim, order_id) == {"submits": 1, "charged": True}
    assert await wallet(api, settings, user) == {"USD": ("8.00", "0.00")}
    await assert_ledger_clean(pool)


async def test_duplicate_deliveries_are_stored_once_and_a_late_pending_after_success_is_stale(
        api, settings, pool, psp_sim, webhooks_to):
    await webhooks_to(duplicate=True)
    user = new_user()
    status, body = await pay(api, settings, user, "tok_card_pending", f"wallet:{user}", "6.00", "card")
    order_id = body["orders"][0]["payment_order_id"]
    assert (await final_payment(api, settings, user, body["payment_id"]))["status"] == "succeeded"
    rows = await _all_applied(pool, order_id, 2)
    assert len({r["event_id"] for r in rows}) == len(rows)  # each delivered twice, stored once
    assert {r["type"] for r in rows} == {"charge.processing", "charge.paid"}
    assert all(r["apply_attempts"] == 1 for r in rows)

    await sim_post(psp_sim, f"/v1/charges/{order_id}/webhooks", {"state": "processing"})  # late, after success
    rows = await _all_applied(pool, order_id, 3)
    assert [r["result"] for r in rows if r["type"] == "charge.processing"][-1] == "stale"
    assert (await final_payment(api, settings, user, body["payment_id"]))["status"] == "succeeded"
    assert await postings_of(pool, order_id) == ["payin_settle"]
    await assert_ledger_clean(pool)


async def test_out_of_order_deliveries_change_nothing_once_the_order_is_done(api, settings, pool, psp_sim,
                                                                             webhooks_to):
    await webhooks_to(out_of_order=True)  # held until flushed, then delivered newest first
    user = new_user()
    status, body = await pay(api, settings, user, "tok_card_pending", f"wallet:{user}", "4.00", "card")
    order_id = body["orders"][0]["payment_order_id"]
    assert (await final_payment(api, settings, user, body["payment_id"]))["status"] == "succeeded"  # by polling
    assert (await sim_post(psp_sim, "/_sim/webhooks/flush"))[0] == 200
    rows = await _all_applied(pool, order_id, 2)
    assert {r["type"]: r["result"] for r in rows} == {"charge.paid": "agrees", "charge.processing": "stale"}
    assert await postings_of(pool, order_id) == ["payin_settle"]
    await assert_ledger_clean(pool)


async def test_a_success_after_the_order_failed_and_released_goes_to_needs_attention(api, settings, pool, psp_sim,
                                                                                     webhooks_to):
    user = new_user()
    await pay(api, settings, user, "tok_card_ok", f"wallet:{user}", "20.00", "card", wait_s=10)
    status, body = await pay(api, settings, user, f"wallet:{user}", "tok_bank_decline", "8.00", "bank_account",
                             wait_s=10)
    assert body["status"] == "failed", body
    order_id = body["orders"][0]["payment_order_id"]
    await sim_post(psp_sim, f"/v1/charges/{order_id}/webhooks", {"state": "paid"})  # the PSP contradicts it
    done = await _status(api, settings, user, body["payment_id"], "needs_attention")
    flagged = [e for e in done["events"] if e["type"] == "order.needs_attention"]
    assert flagged and flagged[-1]["data"]["reason"] == "psp_event_contradicts"
    evidence = await pool.fetchval("""SELECT data FROM event WHERE payment_order_id = $1
                                        AND type = 'order.needs_attention' ORDER BY event_id DESC LIMIT 1""",
                                   uuid.UUID(order_id))
    assert evidence["psp_status"] == "succeeded" and evidence["event_type"] == "charge.paid"
    assert await postings_of(pool, order_id) == ["payout_reserve", "payout_release"]  # never silently flipped
    assert await wallet(api, settings, user) == {"USD": ("20.00", "0.00")}
    await assert_ledger_clean(pool)


# -- late returns -----------------------------------------------------------------------------

async def _receivable_minor(pool) -> int:
    return await pool.fetchval("""SELECT coalesce(sum(balance_minor), 0) FROM account
                                   WHERE code = 'receivable:returns' AND currency = 'USD'""")


async def test_a_late_return_the_wallet_covers_is_compensated_once(api, settings, pool, psp_sim, webhooks_to):
    user = new_user()
    status, body = await pay(api, settings, user, "tok_bank_ok", f"wallet:{user}", "50.00", "bank_account", wait_s=10)
    assert body["status"] == "succeeded", body
    order_id = body["orders"][0]["payment_order_id"]
    receivable_before = await _receivable_minor(pool)
    assert (await sim_post(psp_sim, f"/v1/charges/{order_id}/return", {"return_code": "R01"}))[0] == 200
    done = await _status(api, settings, user, body["payment_id"], "returned")
    assert done["failure_code"] == "R01" and done["is_complete"]
    assert any(e["type"] == "order.returned" and e["data"]["return_code"] == "R01" for e in done["events"])
    assert await wallet(api, settings, user) == {"USD": ("0.00", "0.00")}
    assert await postings_of(pool, order_id) == ["payin_settle", "payin_return"]

    # The provider says it again, under another event id: nothing more is posted.
    await sim_post(psp_sim, f"/v1/charges/{order_id}/webhooks", {"state": "returned"})
    rows = await _all_applied(pool, order_id, 3)
    assert [r["result"] for r in rows if r["type"] == "charge.returned"] == ["applied", "agrees"]
    assert await postings_of(pool, order_id) == ["payin_settle", "payin_return"]
    assert await _receivable_minor(pool) == receivable_before
    await assert_ledger_clean(pool)


async def test_a_late_return_beyond_the_wallet_takes_what_it_holds_and_books_the_rest_as_receivable(
        api, settings, pool, psp_sim, webhooks_to):
    user, payee = new_user(), new_user("payee")
    await register(api, settings, payee)
    status, body = await pay(api, settings, user, "tok_bank_ok", f"wallet:{user}", "50.00", "bank_account", wait_s=10)
    order_id = body["orders"][0]["payment_order_id"]
    moved = await pay(api, settings, user, f"wallet:{user}", f"wallet:{payee}", "30.00", "wallet", wait_s=10)
    assert moved[1]["status"] == "succeeded", moved
    receivable_before = await _receivable_minor(pool)

    await sim_post(psp_sim, f"/v1/charges/{order_id}/return", {"return_code": "R10"})
    done = await _status(api, settings, user, body["payment_id"], "needs_attention")
    flagged = [e for e in done["events"] if e["type"] == "order.needs_attention"]
    assert flagged[-1]["data"]["reason"] == "return_shortfall"
    assert await wallet(api, settings, user) == {"USD": ("0.00", "0.00")}  # what it held, never below zero
    assert await wallet(api, settings, payee) == {"USD": ("30.00", "0.00")}
    assert await _receivable_minor(pool) - receivable_before == -30_00  # the user owes the rest
    assert await postings_of(pool, order_id) == ["payin_settle", "payin_return"]
    legs = await pool.fetch("""SELECT a.code, e.amount_minor FROM ledger_transaction t
                                 JOIN ledger_entry e USING (transaction_id) JOIN account a USING (account_id)
                                WHERE t.idempotency_key = $1 ORDER BY e.amount_minor""", f"{order_id}:return")
    assert [(r["code"], r["amount_minor"]) for r in legs] == [
        ("receivable:returns", -30_00), (f"wallet:{user}", -20_00), ("psp_clearing:test", 50_00)]
    await assert_ledger_clean(pool)


async def test_a_returned_payout_gives_the_money_back_to_the_wallet(api, settings, pool, psp_sim, webhooks_to):
    user = new_user()
    await pay(api, settings, user, "tok_card_ok", f"wallet:{user}", "40.00", "card", wait_s=10)
    status, body = await pay(api, settings, user, f"wallet:{user}", "tok_bank_ok", "15.00", "bank_account", wait_s=10)
    assert body["status"] == "succeeded", body
    order_id = body["orders"][0]["payment_order_id"]
    assert await wallet(api, settings, user) == {"USD": ("25.00", "0.00")}
    await sim_post(psp_sim, f"/v1/charges/{order_id}/return", {"return_code": "R03"})
    await _status(api, settings, user, body["payment_id"], "returned")
    assert await wallet(api, settings, user) == {"USD": ("40.00", "0.00")}
    assert await postings_of(pool, order_id) == ["payout_reserve", "payout_settle", "payout_return"]
    await assert_ledger_clean(pool)
