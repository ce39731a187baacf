"""The screen step runs the rules in force (here the shipped default rules) on every payment, and
the request's IP and country come from the trusted proxy only."""
from __future__ import annotations

import uuid

from tests.helpers import (assert_ledger_clean, attach, auth_header, final_payment, new_user, payment_body,
                           wallet)
from tests.risk.conftest import COUNTRY_HEADER

PAYMENTS = "/payments/payment/v1"


async def _pay(api, settings, user: str, amount: str, *, token: str = "tok_card_ok", headers: dict | None = None,
               kind: str = "payin") -> dict:
    src, dst, option = ((token, f"wallet:{user}", "card") if kind == "payin"
                        else (f"wallet:{user}", token, "bank_account"))
    resp = await api.post(PAYMENTS, headers=auth_header(settings, user) | (headers or {}),
                          json=payment_body(user, src, dst, amount, option))
    body = await resp.json()
    assert resp.status == 202, body
    return await final_payment(api, settings, user, body["payment_id"])


async def _risk_event(pool, payment_id: str) -> dict:
    async with pool.acquire() as conn:
        return await conn.fetchval("""SELECT data FROM event WHERE payment_id = $1 AND type = 'order.risk_checked'""",
                                   uuid.UUID(payment_id))


async def test_card_testing_is_blocked_after_five_attempts_on_the_instrument_in_ten_minutes(risk_api, risk_settings, pool):
    api, settings, user = risk_api, risk_settings, new_user("cardtest")
    await attach(api, settings, user, "tok_card_ok")
    for _ in range(5):
        assert (await _pay(api, settings, user, "1.00"))["status"] == "succeeded"
    blocked = await _pay(api, settings, user, "1.00")
    assert (blocked["status"], blocked["failure_code"]) == ("failed", "risk_blocked")
    decision = await _risk_event(pool, blocked["payment_id"])
    assert decision["verdict"] == "block" and decision["reasons"] == ["card testing"]
    assert decision["tags"] == ["card-testing"] and decision["rule_set_version"] == 0
    assert [(r["action"], r["reason"]) for r in decision["fired"]] == [("block", "card testing")]
    assert decision["model_version"] is None and decision["score"] is None
    # The user sees the verdict in the payment's history, not which rule fired (that helps fraud).
    risk_checked = [e for e in blocked["events"] if e["type"] == "order.risk_checked"]
    assert [e["data"] for e in risk_checked] == [{"verdict": "block"}]
    # The instrument's count is the user's own: another user paying with the same token is not blocked.
    other = new_user("cardtest")
    await attach(api, settings, other, "tok_card_ok")
    assert (await _pay(api, settings, other, "1.00"))["status"] == "succeeded"
    assert await wallet(api, settings, user) == {"USD": ("5.00", "0.00")}
    await assert_ledger_clean(pool)


async def test_an_allowed_payment_records_the_decision_and_nothing_fired(risk_api, risk_settings, pool):
    user = new_user("allowed")
    await attach(risk_api, risk_settings, user, "tok_card_ok")
    paid = await _pay(risk_api, risk_settings, user, "3.00")
    assert paid["status"] == "succeeded"
    decision = await _risk_event(pool, paid["payment_id"])
    assert decision == {"verdict": "allow", "reasons": [], "tags": [], "fired": [], "rule_set_version": 0,
                        "model_version": None, "score": None}
    await assert_ledger_clean(pool)


async def _client_row(pool, payment_id: str) -> tuple:
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT host(client_ip) AS ip, client_country FROM payment_request WHERE payment_id = $1",
                                  uuid.UUID(payment_id))
    return row["ip"], row["client_country"]


async def test_the_client_is_what_the_trusted_proxy_says(risk_api, risk_settings, pool):
    cases = [
        ({}, ("127.0.0.1", None)),
        ({"X-Forwarded-For": "203.0.113.9", COUNTRY_HEADER: "fr"}, ("203.0.113.9", "FR")),
        # The rightmost address a trusted proxy did not add is the client; what is left of it is
        # whatever the client chose to send.
        ({"X-Forwarded-For": "198.51.100.7, 203.0.113.9"}, ("203.0.113.9", None)),
        ({"X-Forwarded-For": "203.0.113.9, 127.0.0.1"}, ("203.0.113.9", None)),
        ({"X-Forwarded-For": "2001:db8::1", COUNTRY_HEADER: "XX"}, ("2001:db8::1", None)),  # XX: unknown
        ({"X-Forwarded-For": "not-an-ip", COUNTRY_HEADER: "USA"}, ("127.0.0.1", None)),
    ]
    for headers, expected in cases:
        user = new_user("proxied")  # one payment each: six would be card testing
        await attach(risk_api, risk_settings, user, "tok_card_ok")
        paid = await _pay(risk_api, risk_settings, user, "1.00", headers=headers)
        assert await _client_row(pool, paid["payment_id"]) == expected, headers
    await assert_ledger_clean(pool)


async def test_without_trusted_proxies_forwarded_headers_are_ignored(api, settings, pool, worker):
    user = new_user("direct")
    await attach(api, settings, user, "tok_card_ok")
    resp = await api.post(PAYMENTS, headers=auth_header(settings, user) | {"X-Forwarded-For": "203.0.113.9",
                                                                              "CF-IPCountry": "FR"},
                          json=payment_body(user, "tok_card_ok", f"wallet:{user}", "1.00", "card"))
    body = await resp.json()
    assert resp.status == 202, body
    assert await _client_row(pool, body["payment_id"]) == ("127.0.0.1", None)
    await final_payment(api, settings, user, body["payment_id"])
    await assert_ledger_clean(pool)
