"""The console in a real headless chromium: sign in, find a payment and read its timeline, replay
a dead letter (the order then completes), claim and approve a review item (the order proceeds),
refund part of a payment from its page, and a script in a payment's field or a note stays text.
Screenshots: tests/console/browser.py."""
from __future__ import annotations

import uuid

import pytest

from tests.console.browser import browser, tab  # noqa: F401 (fixtures)
from tests.console.support import SCRIPT, operator_id, script_payment
from tests.helpers import assert_ledger_clean, final_payment, new_user, pay, sim_post, wait_until
from tests.review.support import item_of

pytestmark = pytest.mark.usefixtures("console_worker")


async def _status(pool, user_id: str, payment_id: str) -> str:
    return await pool.fetchval("SELECT status FROM payment_request WHERE user_id = $1 AND payment_id = $2",
                               user_id, uuid.UUID(payment_id))


async def test_sign_in_search_a_payment_and_read_its_timeline(tab, web, console_settings, operator_token, pool):
    user = new_user("shopper")
    status, body = await pay(web, console_settings, user, "tok_card_ok", f"wallet:{user}", "12.34", "card", wait_s=10)
    assert status == 201 and body["status"] == "succeeded", body
    await tab.sign_in(operator_token(operator_id()), screenshot="01-sign-in")
    await tab.page.click("nav a:has-text('Payments')")
    await tab.page.fill("#q", body["payment_id"])
    await tab.page.click("button:has-text('Search')")
    await tab.page.wait_for_url(f"**/console/payments/{user}/{body['payment_id']}")
    assert await tab.page.inner_text("#payment-status") == "succeeded"
    timeline = [await li.get_attribute("data-event-type") for li in await tab.page.query_selector_all("#timeline li")]
    assert timeline[0] == "payment.requested" and "order.posted" in timeline, timeline
    assert "12.34 USD" in await tab.page.inner_text("main")
    await tab.screenshot("02-payment-timeline")
    # The same payment found by its user in the list.
    await tab.goto(f"/console/payments?q={user}")
    assert await tab.page.locator("a.payment-link", has_text=body["payment_id"]).count() == 1
    tab.assert_inert()
    await assert_ledger_clean(pool)


async def test_replay_a_dead_letter_and_its_order_completes(tab, web, console_settings, console_sim, operator_token,
                                                           pool):
    user = new_user("stuck")
    await sim_post(console_sim, "/v1/outage", {"outage": True})
    try:
        status, body = await pay(web, console_settings, user, "tok_card_ok", f"wallet:{user}", "7.00", "card")
        assert status == 202, body
        stuck = await final_payment(web, console_settings, user, body["payment_id"], timeout_s=60)
        assert stuck["status"] == "needs_attention", stuck
        order_id = stuck["orders"][0]["payment_order_id"]
        dead = "SELECT dead_letter_id FROM dead_letter WHERE payment_order_id = $1"
        assert await wait_until(lambda: pool.fetchval(dead, uuid.UUID(order_id)), timeout_s=30)
    finally:
        await sim_post(console_sim, "/v1/outage", {"outage": False})
    operator = operator_id()
    await tab.sign_in(operator_token(operator))
    await tab.page.click("nav a:has-text('Queues')")
    row = tab.page.locator(f'tr[data-order-id="{order_id}"]').first
    assert await row.count() == 1
    await tab.screenshot("03-dead-letters")
    await row.locator("button:has-text('Replay')").click()
    await tab.page.wait_for_url("**/console/queues?done=replayed")
    assert "Dead letter replayed" in await tab.page.inner_text(".notice")
    assert await wait_until(lambda: _succeeded(pool, user, body["payment_id"]), timeout_s=30)
    await tab.goto(f"/console/payments/{user}/{body['payment_id']}")
    assert await tab.page.inner_text("#payment-status") == "succeeded"
    reopened = tab.page.locator('#timeline li[data-event-type="order.reopened"]')
    assert await reopened.count() == 1 and f"replayed by {operator}" in await reopened.inner_text()
    await tab.screenshot("04-replayed-payment")
    tab.assert_inert()
    await assert_ledger_clean(pool)


async def _succeeded(pool, user: str, payment_id: str) -> bool:
    return await _status(pool, user, payment_id) == "succeeded"


async def test_claim_and_approve_a_review_item_and_the_order_proceeds(tab, web, console_settings, operator_token,
                                                                     pool):
    user, operator = new_user("big"), operator_id()
    # Over 500.00 USD on an instrument attached just now: the default rules park it for review.
    status, body = await pay(web, console_settings, user, "tok_card_ok", f"wallet:{user}", "600.00", "card")
    assert status == 202, body
    item = await wait_until(lambda: item_of(pool, user, body["payment_id"]), timeout_s=30)
    assert item is not None and item.state == "open"
    await tab.sign_in(operator_token(operator))
    await tab.page.click("nav a:has-text('Reviews')")
    await tab.page.locator(f'tr[data-payment-id="{body["payment_id"]}"] a.review-link').click()
    await tab.page.wait_for_url(f"**/console/reviews/{item.review_id}")
    await tab.page.click("#claim")
    await tab.page.wait_for_url("**?done=claimed")
    assert await tab.page.inner_text("#review-state") == "claimed"
    assert (await tab.page.inner_text("#claimed-by")).startswith(operator)
    await tab.page.fill("#approve-note", f"customer confirmed by phone {SCRIPT}")
    await tab.screenshot("05-review-claimed")
    await tab.page.click("#approve")
    await tab.page.wait_for_url("**?done=approved")
    assert await tab.page.inner_text("#review-state") == "approved"
    assert await tab.page.inner_text("#review-note") == f"customer confirmed by phone {SCRIPT}"
    assert await wait_until(lambda: _succeeded(pool, user, body["payment_id"]), timeout_s=30)
    await tab.goto(f"/console/payments/{user}/{body['payment_id']}")
    assert await tab.page.inner_text("#payment-status") == "succeeded"
    approved = tab.page.locator('#timeline li[data-event-type="order.review_approved"]')
    assert await approved.count() == 1 and SCRIPT in await approved.inner_text()
    await tab.screenshot("06-approved-payment")
    tab.assert_inert()
    assert await tab.page.evaluate("document.scripts.length") == 0
    await assert_ledger_clean(pool)


async def test_refund_part_of_a_payment_from_its_page(tab, web, console_settings, console_sim, operator_token, pool):
    user, operator = new_user("refund"), operator_id()
    status, body = await pay(web, console_settings, user, "tok_card_ok", f"wallet:{user}", "10.00", "card", wait_s=10)
    assert status == 201 and body["status"] == "succeeded", body
    await tab.sign_in(operator_token(operator))
    await tab.goto(f"/console/payments/{user}/{body['payment_id']}")
    assert await tab.page.input_value("#reversal-amount") == "10.00"  # what remains
    await tab.page.fill("#reversal-amount", "10.50")
    await tab.page.fill("#reversal-reason", "more than was paid")
    await tab.page.click("#reverse")
    assert (await tab.page.inner_text("#reversal-refusal")).startswith("amount_exceeds_remaining")
    await tab.screenshot("07-reversal-refused")
    await tab.page.fill("#reversal-amount", "2.50")
    await tab.page.fill("#reversal-reason", f"one item returned {SCRIPT}")
    await tab.page.click("#reverse")
    await tab.page.wait_for_url("**?done=reversal_requested")
    assert await wait_until(lambda: _status_is(pool, user, body["payment_id"], "partially_refunded"), timeout_s=30)
    await tab.page.reload()
    row = tab.page.locator("table.reversals tbody tr")
    assert await row.count() == 1
    assert await row.locator(".reversal-state").inner_text() == "succeeded"
    assert await row.locator(".reversal-reason").inner_text() == f"one item returned {SCRIPT}"
    assert await tab.page.inner_text("#payment-status") == "partially_refunded"
    assert await tab.page.input_value("#reversal-amount") == "7.50"
    await tab.screenshot("08-partially-refunded")
    tab.assert_inert()
    await assert_ledger_clean(pool)


async def _status_is(pool, user: str, payment_id: str, status: str) -> bool:
    return await _status(pool, user, payment_id) == status


async def test_a_script_in_a_payment_field_stays_inert_in_the_browser(tab, operator_token, pool):
    user = new_user("xss")
    payment_id = await script_payment(pool, user)
    await tab.sign_in(operator_token(operator_id()))
    await tab.goto(f"/console/payments/{user}/{payment_id}")
    assert await tab.page.inner_text("#from-acct") == SCRIPT
    await tab.goto(f"/console/payments?q={user}")
    assert SCRIPT in await tab.page.inner_text("table.payments")
    tab.assert_inert()
    assert await tab.page.evaluate("document.scripts.length") == 0
    await assert_ledger_clean(pool)


async def test_the_overview_charts_payments_per_minute_by_status(tab, web, console_settings, operator_token, pool):
    user = new_user("chart")
    outcomes = {"succeeded": 0, "failed": 0}
    for token, amount in [("tok_card_ok", "5.00"), ("tok_card_ok", "6.00"), ("tok_card_decline", "3.00")]:
        status, body = await pay(web, console_settings, user, token, f"wallet:{user}", amount, "card", wait_s=10)
        assert status == 201, body
        outcomes[body["status"]] += 1
    assert outcomes == {"succeeded": 2, "failed": 1}
    await tab.sign_in(operator_token(operator_id()))
    assert await tab.page.locator("svg.chart rect.s-succeeded").count() >= 1
    assert await tab.page.locator("svg.chart rect.s-failed").count() >= 1
    assert int(await tab.page.inner_text('[data-status-total="succeeded"]')) >= 2
    assert int(await tab.page.inner_text('[data-status-total="failed"]')) >= 1
    await tab.screenshot("00-overview")
    tab.assert_inert()
    await assert_ledger_clean(pool)
