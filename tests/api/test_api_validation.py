"""The front door refuses every malformed or impermissible payment with a precise 4xx, and
writes nothing for it."""
from __future__ import annotations

import uuid

import msgspec
import pytest
import structlog
from aiohttp import web

from paycell.http.app import create_app
from paycell.http.state import CALLER
from tests.helpers import auth_header, new_user
from tests.api.support import PAYMENTS, WALLET, call, error_of, get_as, payer, payin, post_payment, rows_for

OTHER = "someone-else"


def _set(**fields):
    return lambda body: body | fields


def _drop(name):
    return lambda body: {k: v for k, v in body.items() if k != name}


# (case, change to a valid pay-in body, status, code, field)
BAD_BODIES = [
    ("payment_id not a string", _set(payment_id=123), 400, "invalid_request", "payment_id"),
    ("user_id not a string", _set(user_id=["u"]), 400, "invalid_request", "user_id"),
    ("from_acct null", _set(from_acct=None), 400, "invalid_request", "from_acct"),
    ("to_acct an object", _set(to_acct={"wallet": "x"}), 400, "invalid_request", "to_acct"),
    ("amount a number", _set(amount=12.3), 400, "invalid_request", "amount"),
    ("amount an integer", _set(amount=12), 400, "invalid_request", "amount"),
    ("currency a number", _set(currency=840), 400, "invalid_request", "currency"),
    ("payment_option a bool", _set(payment_option=True), 400, "invalid_request", "payment_option"),
    *[(f"{name} missing", _drop(name), 400, "invalid_request", name)
      for name in ("payment_id", "user_id", "from_acct", "to_acct", "amount", "currency", "payment_option")],
    ("unknown extra field", _set(memo="hi"), 400, "invalid_request", "memo"),
    ("amount with too many decimals", _set(amount="12.345"), 422, "amount_too_precise", "amount"),
    ("negative amount", _set(amount="-1"), 422, "amount_invalid", "amount"),
    ("zero amount", _set(amount="0"), 422, "amount_not_positive", "amount"),
    ("exponent amount", _set(amount="1e3"), 422, "amount_invalid", "amount"),
    ("amount with spaces", _set(amount=" 1.00"), 422, "amount_invalid", "amount"),
    ("amount too large", _set(amount="99999999999999"), 422, "amount_too_large", "amount"),
    ("lower-case currency", _set(currency="usd"), 422, "currency_unknown", "currency"),
    ("unknown currency", _set(currency="XXX"), 422, "currency_unknown", "currency"),
    ("currency wallets cannot hold", _set(currency="CHF"), 422, "currency_not_supported", "currency"),
    ("unknown payment option", _set(payment_option="bitcoin"), 422, "payment_option_invalid", "payment_option"),
    ("option not fitting the token", _set(payment_option="paypal"), 422, "payment_option_mismatch",
     "payment_option"),
    ("malformed account", _set(from_acct="acct_123"), 422, "account_invalid", "from_acct"),
    ("malformed wallet", _set(to_acct="wallet:"), 422, "account_invalid", "to_acct"),
    ("token to token", _set(to_acct="tok_bank_ok"), 422, "unsupported_flow", "to_acct"),
    ("transfer to self", lambda b: b | {"from_acct": b["to_acct"], "payment_option": "wallet"}, 422,
     "unsupported_flow", "to_acct"),
    ("pay-in into another's wallet", _set(to_acct=f"wallet:{OTHER}"), 403, "forbidden", "to_acct"),
    ("pay-out from another's wallet", _set(from_acct=f"wallet:{OTHER}", to_acct="tok_bank_ok",
                                           payment_option="bank_account"), 403, "forbidden", "from_acct"),
    ("user_id not the caller", _set(user_id=OTHER), 403, "forbidden", "user_id"),
    ("payment_id not a UUID", _set(payment_id="order-42"), 422, "payment_id_invalid", "payment_id"),
]


@pytest.mark.parametrize(("change", "status", "code", "field"), [case[1:] for case in BAD_BODIES],
                         ids=[case[0] for case in BAD_BODIES])
async def test_a_bad_body_is_refused_precisely_and_writes_nothing(api, settings, pool, change, status, code, field):
    user = new_user()
    body = change(payin(user))
    reply = await post_payment(api, settings, user, body)
    assert error_of(reply) == (status, code), reply.json
    assert reply.json["error"].get("field") == field, reply.json
    assert await rows_for(pool, user) == (0, 0, 0)
    assert await rows_for(pool, OTHER) == (0, 0, 0)
    if isinstance(body.get("payment_id"), str) and _is_uuid(body["payment_id"]):
        assert await pool.fetchval("SELECT count(*) FROM payment_request WHERE payment_id = $1",
                                   body["payment_id"]) == 0


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


# (case, raw body, status, code)
BAD_RAW = [
    ("malformed JSON", b'{"payment_id": ', 400, "invalid_request"),
    ("not JSON at all", b"payment please", 400, "invalid_request"),
    ("empty body", b"", 400, "invalid_request"),
    ("JSON array", b"[]", 400, "invalid_request"),
    ("JSON string", b'"pay"', 400, "invalid_request"),
    ("invalid UTF-8", b'{"payment_id": "\xff"}', 400, "invalid_request"),
    ("20 KB body", msgspec.json.encode({"memo": "x" * 20_000}), 413, "payload_too_large"),
]


@pytest.mark.parametrize(("raw", "status", "code"), [case[1:] for case in BAD_RAW], ids=[c[0] for c in BAD_RAW])
async def test_a_body_that_is_not_a_payment_object_is_refused(api, settings, pool, raw, status, code):
    user = new_user()
    reply = await call(api, "POST", PAYMENTS, data=raw,
                       headers=auth_header(settings, user) | {"Content-Type": "application/json"})
    assert error_of(reply) == (status, code), reply.json
    assert await rows_for(pool, user) == (0, 0, 0)


async def test_a_valid_payment_padded_past_the_size_limit_is_refused(api, settings, pool):
    user = new_user()
    reply = await post_payment(api, settings, user, payin(user) | {"padding": "x" * 20_000})
    assert error_of(reply) == (413, "payload_too_large")
    assert await rows_for(pool, user) == (0, 0, 0)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_a_body_that_is_not_declared_json_is_unsupported(api, settings, pool, content_type):
    user = new_user()
    headers = auth_header(settings, user) | ({"Content-Type": content_type} if content_type else {})
    reply = await call(api, "POST", PAYMENTS, headers=headers, data=msgspec.json.encode(payin(user)))
    assert error_of(reply) == (415, "unsupported_media_type")
    assert await rows_for(pool, user) == (0, 0, 0)


async def test_json_with_a_charset_parameter_is_json(api, settings, pool):
    user = await payer(api, settings)
    reply = await call(api, "POST", PAYMENTS, data=msgspec.json.encode(payin(user)),
                       headers=auth_header(settings, user) | {"Content-Type": "application/json; charset=utf-8"})
    assert reply.status == 202, reply.json
    assert await rows_for(pool, user) == (1, 1, 1)


@pytest.mark.parametrize("prefer", ["wait=soon", "wait=-1", "wait", "wait=1.5", "wait=2s"])
async def test_a_malformed_wait_preference_is_refused(api, settings, pool, prefer):
    user = new_user()
    reply = await post_payment(api, settings, user, payin(user), prefer=prefer)
    assert error_of(reply) == (400, "invalid_request")
    assert reply.json["error"]["field"] == "Prefer"
    assert await rows_for(pool, user) == (0, 0, 0)


async def test_other_preferences_are_ignored(api, settings, pool):
    user = await payer(api, settings)
    reply = await post_payment(api, settings, user, payin(user), prefer="respond-async, return=minimal")
    assert reply.status == 202 and "Preference-Applied" not in reply.headers
    assert await rows_for(pool, user) == (1, 1, 1)


async def test_an_unknown_route_is_a_json_404(api, settings):
    reply = await get_as(api, settings, new_user(), "/payments/nothing/v1")
    assert error_of(reply) == (404, "route_not_found")


async def test_a_wrong_method_is_a_json_405_naming_the_allowed_ones(api, settings):
    headers = auth_header(settings, new_user())
    reply = await call(api, "DELETE", PAYMENTS, headers=headers)
    assert error_of(reply) == (405, "method_not_allowed")
    assert "POST" in reply.headers["Allow"] and "GET" in reply.headers["Allow"]
    reply = await call(api, "PUT", WALLET, headers=headers)
    assert error_of(reply) == (405, "method_not_allowed")


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=ten", "limit=-1", "limit=",
                                   "starting_after=bm9wZQ", "starting_after=%25%25", "limit=2&limit=3",
                                   "page=2"])
async def test_a_bad_list_query_is_refused(api, settings, query):
    reply = await get_as(api, settings, new_user(), f"{PAYMENTS}?{query}")
    assert error_of(reply) == (400, "invalid_request"), reply.json
    assert reply.json["error"]["field"] == query.split("=")[0]


async def test_an_unexpected_failure_is_a_bare_500_logged_with_its_traceback(aiohttp_client, settings):
    async def crash(request: web.Request) -> web.Response:
        raise RuntimeError(f"internal detail about {request[CALLER]}")

    app = create_app(settings)
    app.router.add_get("/crash", crash)
    client = await aiohttp_client(app)
    with structlog.testing.capture_logs() as logs:
        reply = await call(client, "GET", "/crash", headers=auth_header(settings, new_user()))
    assert reply.status == 500
    assert reply.json == {"error": {"code": "internal_error", "message": "internal error"}}
    crashed = [entry for entry in logs if entry["event"] == "request.crashed"]
    assert len(crashed) == 1 and crashed[0]["exc_info"] is True
    assert crashed[0]["request_id"] == reply.headers["X-Request-Id"]
