"""Reversing a payment from its console page: the form posts to the operator API's own reversal
(paycell.http.reversals.reverse_and_send) as the signed-in operator, keyed by the form's random
key. Real HTTP, Postgres, the console's worker and its simulator; every test that moves money ends
with the ledger invariants."""
from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest

from tests.console.support import SCRIPT, operator_id, reversal_form, sign_in
from tests.helpers import assert_ledger_clean, new_user, pay, postings_of, wait_until

pytestmark = pytest.mark.usefixtures("console_worker")


def _page(user: str, payment_id: str) -> str:
    return f"/console/payments/{user}/{payment_id}"


async def _paid(web, settings, user: str, amount: str) -> dict:
    status, body = await pay(web, settings, user, "tok_card_ok", f"wallet:{user}", amount, "card", wait_s=10)
    assert status == 201 and body["status"] == "succeeded", (status, body)
    return body


async def _form(web, user: str, payment_id: str) -> dict[str, str] | None:
    resp = await web.get(_page(user, payment_id))
    assert resp.status == 200, resp.status
    return reversal_form(await resp.text())


async def _reversals(pool, user: str) -> list:
    return await pool.fetch("SELECT reversal_id::text, amount_minor, state, requested_by, request_key, reason "
                            "FROM payment_reversal WHERE user_id = $1 ORDER BY created_at", user)


async def _ended(pool, user: str) -> list:
    async def all_ended():
        rows = await _reversals(pool, user)
        return rows if rows and all(r["state"] in ("succeeded", "failed", "needs_attention") for r in rows) else None
    rows = await wait_until(all_ended, timeout_s=30, interval_s=0.1)
    assert rows, f"the reversals of {user} did not end"
    return rows


async def _sim_refunds(sim_url: str, order_id: str) -> list[dict]:
    async with aiohttp.ClientSession() as s, s.get(f"{sim_url}/v1/charges/{order_id}/refunds") as r:
        return await r.json()


async def test_a_partial_refund_from_the_payment_page_is_made_at_the_provider_and_shown(
        web, console_settings, console_sim, operator_token, pool):
    user, operator = new_user("refund"), operator_id()
    paid = await _paid(web, console_settings, user, "10.00")
    order_id = paid["orders"][0]["payment_order_id"]
    await sign_in(web, operator_token(operator))
    form = await _form(web, user, paid["payment_id"])
    assert form is not None and (form["amount"], form["currency"]) == ("10.00", "USD")  # what remains
    uuid.UUID(form["key"])

    sent = await web.post(f"{_page(user, paid['payment_id'])}/reversals",
                          data={**form, "amount": "4.00", "reason": f"damaged parcel {SCRIPT}"}, allow_redirects=False)
    assert sent.status == 303, await sent.text()
    assert sent.headers["Location"] == f"{_page(user, paid['payment_id'])}?done=reversal_requested"
    [reversal] = await _ended(pool, user)
    assert (reversal["state"], reversal["amount_minor"], reversal["requested_by"]) == ("succeeded", 4_00, operator)
    assert reversal["request_key"] == f"console:{form['key']}"
    assert [r["amount_minor"] for r in await _sim_refunds(console_sim, order_id)] == [4_00]
    assert await postings_of(pool, order_id) == ["payin_settle", "payin_refund"]

    page = await web.get(sent.headers["Location"])
    html = await page.text()
    assert page.status == 200 and "Reversal requested" in html
    assert 'id="payment-status">partially_refunded<' in html and 'id="refunded">4.00 USD<' in html
    row = html.split(f'data-reversal-id="{reversal["reversal_id"]}"', 1)[1].split("</tr>", 1)[0]
    assert "4.00 USD" in row and ">succeeded<" in row and operator in row
    assert "damaged parcel &lt;script&gt;" in row and SCRIPT not in html
    again = reversal_form(html)
    assert again is not None and again["amount"] == "6.00" and again["key"] != form["key"]
    await assert_ledger_clean(pool)


async def test_a_form_sent_twice_or_at_once_twice_reverses_once(web, console_settings, console_sim, operator_token,
                                                                 pool):
    user = new_user("twice")
    paid = await _paid(web, console_settings, user, "10.00")
    order_id = paid["orders"][0]["payment_order_id"]
    await sign_in(web, operator_token(operator_id()))
    form = {**await _form(web, user, paid["payment_id"]), "amount": "3.00", "reason": "double click"}
    path = f"{_page(user, paid['payment_id'])}/reversals"

    at_once = await asyncio.gather(*(web.post(path, data=form, allow_redirects=False) for _ in range(2)))
    later = await web.post(path, data=form, allow_redirects=False)
    done = sorted(r.headers["Location"].rsplit("=", 1)[1] for r in [*at_once, later])
    assert [r.status for r in [*at_once, later]] == [303, 303, 303]
    assert done == ["reversal_repeated", "reversal_repeated", "reversal_requested"]
    [reversal] = await _ended(pool, user)
    assert (reversal["state"], reversal["amount_minor"]) == ("succeeded", 3_00)
    assert [r["amount_minor"] for r in await _sim_refunds(console_sim, order_id)] == [3_00]
    repeated = await (await web.get(later.headers["Location"])).text()
    assert "This form was sent before" in repeated and repeated.count("data-reversal-id=") == 1

    # The same form changed after it was used is refused, not a second reversal under its key.
    changed = await web.post(path, data={**form, "amount": "2.00"})
    assert changed.status == 422 and "idempotency_key_reused" in await changed.text()
    assert len(await _reversals(pool, user)) == 1
    await assert_ledger_clean(pool)


async def test_refusals_show_their_code_on_the_page_and_write_nothing(web, console_settings, operator_token, pool):
    user = new_user("refused")
    paid = await _paid(web, console_settings, user, "10.00")
    status, declined = await pay(web, console_settings, user, "tok_card_decline", f"wallet:{user}", "3.00", "card",
                                 wait_s=10)
    assert declined["status"] == "failed", declined
    status, payout = await pay(web, console_settings, user, f"wallet:{user}", "tok_bank_ok", "5.00", "bank_account",
                               wait_s=10)
    assert status == 201 and payout["status"] == "succeeded", payout
    await sign_in(web, operator_token(operator_id()))
    form = await _form(web, user, paid["payment_id"])
    path = f"{_page(user, paid['payment_id'])}/reversals"
    cases = [
        ({"amount": "10.01"}, 422, "amount_exceeds_remaining"),
        ({"amount": "4,00"}, 422, "amount_invalid"),
        ({"amount": "0.00"}, 422, "amount_not_positive"),
        ({"amount": "1.00", "currency": "EUR"}, 422, "currency_mismatch"),
        ({"amount": "1.00", "reason": "  "}, 400, "invalid_request"),
        ({"amount": "1.00", "key": "not-a-uuid"}, 400, "invalid_request"),
    ]
    for change, want_status, want_code in cases:
        resp = await web.post(path, data={**form, "reason": "over", **change})
        html = await resp.text()
        assert (resp.status, resp.content_type) == (want_status, "text/html"), (change, html)
        refusal = html.split('id="reversal-refusal">', 1)[1].split("</p>", 1)[0]
        assert f"<code>{want_code}</code>" in refusal, (change, refusal)
        kept = reversal_form(html)  # the page again, its form holding what the operator typed, with a new key
        assert kept is not None and kept["amount"] == change["amount"] and kept["key"] != form["key"], change
    exceeded = await web.post(path, data={**form, "amount": "10.01", "reason": "over"})
    assert "1000 minor units of the payment remain to reverse" in await exceeded.text()

    # No form on a payment that cannot be reversed, and a crafted post is refused the same way.
    assert await _form(web, user, declined["payment_id"]) is None
    not_reversible = await web.post(f"{_page(user, declined['payment_id'])}/reversals",
                                    data={**form, "amount": "1.00", "reason": "crafted", "key": str(uuid.uuid4())})
    assert not_reversible.status == 409 and "<code>payment_not_reversible</code>" in await not_reversible.text()
    payout_form = await _form(web, user, payout["payment_id"])
    assert payout_form is not None and payout_form["amount"] == "5.00"  # a recall is whole
    part = await web.post(f"{_page(user, payout['payment_id'])}/reversals",
                          data={**payout_form, "amount": "2.00", "reason": "part"})
    assert part.status == 422 and "<code>reversal_not_supported</code>" in await part.text()
    ghost = await web.post(f"{_page(user, str(uuid.uuid4()))}/reversals", data={**form, "reason": "ghost"})
    assert ghost.status == 404 and "not_found" in await ghost.text()

    assert await _reversals(pool, user) == []
    assert await pool.fetchval("SELECT count(*) FROM event WHERE user_id = $1 AND type LIKE 'reversal.%'", user) == 0
    await assert_ledger_clean(pool)


async def test_a_reversal_without_its_csrf_token_or_session_is_refused_and_writes_nothing(
        web, console_settings, operator_token, pool):
    user = new_user("csrf")
    paid = await _paid(web, console_settings, user, "10.00")
    path = f"{_page(user, paid['payment_id'])}/reversals"
    await sign_in(web, operator_token(operator_id()))
    form = {**await _form(web, user, paid["payment_id"]), "amount": "1.00", "reason": "forged"}
    no_token = await web.post(path, data={k: v for k, v in form.items() if k != "csrf"})
    assert no_token.status == 403 and "csrf_rejected" in await no_token.text()
    other_token = await web.post(path, data={**form, "csrf": "0" * 64})
    assert other_token.status == 403 and "csrf_rejected" in await other_token.text()
    web.session.cookie_jar.clear()
    signed_out = await web.post(path, data=form)
    assert signed_out.status == 401
    assert await _reversals(pool, user) == []
    await assert_ledger_clean(pool)
