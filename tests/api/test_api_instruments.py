"""Instruments belong to users: a pay-in or pay-out must name a PSP token the caller attached
(403 otherwise, nothing written). Attach is idempotent; another user's instrument is a 404."""
from __future__ import annotations

import asyncio

import pytest

from tests.helpers import attach, auth_header, new_user, payment_body
from tests.api.support import INSTRUMENTS, PAYMENTS, call, error_of, get_as, payin, post_payment, rows_for


def payout(user: str, token: str = "tok_bank_ok") -> dict:
    return payment_body(user, f"wallet:{user}", token, "1.00", "bank_account")


async def post_instrument(api, settings, user: str, body: dict):
    return await call(api, "POST", INSTRUMENTS, headers=auth_header(settings, user), json=body)


async def test_attaching_answers_a_stripe_like_instrument_and_again_the_same_one(api, settings):
    user = new_user()
    first = await post_instrument(api, settings, user, {"token": "tok_card_ok", "payment_option": "card"})
    assert first.status == 201, first.json
    inst = first.json
    assert inst["object"] == "instrument" and inst["instrument_id"].startswith("inst_")
    assert (inst["user_id"], inst["token"], inst["payment_option"], inst["connector"], inst["status"]) == (
        user, "tok_card_ok", "card", settings.psp_default, "attached")
    again = await post_instrument(api, settings, user, {"token": "tok_card_ok", "payment_option": "card",
                                                        "connector": settings.psp_default})
    assert (again.status, again.json) == (200, inst)


async def test_concurrent_attaches_of_one_token_make_one_instrument(api, settings, pool):
    user = new_user()
    replies = await asyncio.gather(*(post_instrument(api, settings, user, {"token": "tok_bank_ok",
                                                                           "payment_option": "bank_account"})
                                     for _ in range(10)))
    assert sorted(r.status for r in replies) == [200] * 9 + [201]
    assert len({r.json["instrument_id"] for r in replies}) == 1
    assert await pool.fetchval("SELECT count(*) FROM instrument WHERE user_id = $1", user) == 1


@pytest.mark.parametrize("body, status, code, field", [
    ({"token": "tok_card_ok", "payment_option": "bank_account"}, 422, "payment_option_mismatch", "payment_option"),
    ({"token": "tok_card_ok", "payment_option": "wallet"}, 422, "payment_option_invalid", "payment_option"),
    ({"token": "card_ok", "payment_option": "card"}, 422, "token_invalid", "token"),
    ({"token": "wallet:bob", "payment_option": "card"}, 422, "token_invalid", "token"),
    ({"token": "tok_card_ok", "payment_option": "card", "connector": "nope"}, 422, "connector_unknown", "connector"),
    ({"token": "tok_card_ok", "payment_option": "card", "extra": 1}, 400, "invalid_request", "extra"),
    ({"payment_option": "card"}, 400, "invalid_request", "token"),
])
async def test_a_bad_attach_is_refused_precisely_and_writes_nothing(api, settings, pool, body, status, code, field):
    user = new_user()
    reply = await post_instrument(api, settings, user, body)
    assert error_of(reply) == (status, code) and reply.json["error"].get("field") == field
    assert await pool.fetchval("SELECT count(*) FROM instrument WHERE user_id = $1", user) == 0


async def test_the_list_pages_through_the_callers_attached_instruments_newest_first(api, settings):
    user, other = new_user(), new_user()
    tokens = ["tok_card_ok", "tok_bank_ok", "tok_paypal_ok", "tok_applepay_ok", "tok_googlepay_ok"]
    for token in tokens:
        await attach(api, settings, user, token)
    await attach(api, settings, other, "tok_card_decline")
    seen, cursor = [], None
    while True:
        page = await get_as(api, settings, user, f"{INSTRUMENTS}?limit=2" + (f"&starting_after={cursor}" if cursor else ""))
        assert page.status == 200 and page.json["object"] == "list"
        seen += [i["token"] for i in page.json["data"]]
        if not page.json["has_more"]:
            break
        cursor = page.json["next_cursor"]
    assert seen == tokens[::-1]


async def test_another_users_instrument_is_not_found_and_stays_attached(api, settings):
    alice, mallory = new_user("alice"), new_user("mallory")
    inst = await attach(api, settings, alice, "tok_card_ok")
    reply = await call(api, "DELETE", f"{INSTRUMENTS}/{inst['instrument_id']}", headers=auth_header(settings, mallory))
    assert error_of(reply) == (404, "not_found")
    for bad in ("inst_" + "0" * 32, "inst_xyz", inst["instrument_id"].removeprefix("inst_"), "1"):
        reply = await call(api, "DELETE", f"{INSTRUMENTS}/{bad}", headers=auth_header(settings, alice))
        assert error_of(reply) == (404, "not_found"), bad
    listed = await get_as(api, settings, alice, INSTRUMENTS)
    assert [i["instrument_id"] for i in listed.json["data"]] == [inst["instrument_id"]]


async def test_a_payin_from_a_token_the_caller_has_not_attached_is_forbidden_and_writes_nothing(api, settings, pool):
    alice, mallory = new_user("alice"), new_user("mallory")
    await attach(api, settings, alice, "tok_card_ok")  # attached by someone else: no use to mallory
    reply = await post_payment(api, settings, mallory, payin(mallory))
    assert error_of(reply) == (403, "forbidden") and reply.json["error"]["field"] == "from_acct"
    assert await rows_for(pool, mallory) == (0, 0, 0)


async def test_a_payout_to_a_token_the_caller_has_not_attached_is_forbidden_and_writes_nothing(api, settings, pool):
    user = new_user()
    await attach(api, settings, user, "tok_card_ok")  # another token of the user's: still not this one
    reply = await post_payment(api, settings, user, payout(user))
    assert error_of(reply) == (403, "forbidden") and reply.json["error"]["field"] == "to_acct"
    assert await rows_for(pool, user) == (0, 0, 0)
    await attach(api, settings, user, "tok_bank_ok")
    assert (await post_payment(api, settings, user, payout(user))).status == 202


async def test_a_detached_instrument_pays_no_more_but_its_past_payments_stay(api, settings, pool):
    user = new_user()
    inst = await attach(api, settings, user, "tok_card_ok")
    body = payin(user)
    assert (await post_payment(api, settings, user, body)).status == 202
    detached = await call(api, "DELETE", f"{INSTRUMENTS}/{inst['instrument_id']}", headers=auth_header(settings, user))
    assert detached.status == 200 and detached.json["status"] == "detached" and detached.json["detached_at"]
    again = await call(api, "DELETE", f"{INSTRUMENTS}/{inst['instrument_id']}", headers=auth_header(settings, user))
    assert (again.status, again.json) == (200, detached.json)
    assert (await get_as(api, settings, user, INSTRUMENTS)).json["data"] == []
    # The payment made before stays, and its replay still replays; a new one is refused.
    assert (await get_as(api, settings, user, f"{PAYMENTS}/{body['payment_id']}")).status == 200
    replay = await post_payment(api, settings, user, body)
    assert replay.status == 202 and replay.headers["Idempotent-Replayed"] == "true"
    assert error_of(await post_payment(api, settings, user, payin(user))) == (403, "forbidden")
    assert await rows_for(pool, user) == (1, 1, 1)
    # Attaching the token again makes a new instrument.
    reattached = await attach(api, settings, user, "tok_card_ok")
    assert reattached["instrument_id"] != inst["instrument_id"]
    assert (await post_payment(api, settings, user, payin(user))).status == 202


async def test_the_openapi_description_names_the_instrument_routes(api):
    doc = (await call(api, "GET", "/openapi.json")).json
    assert set(doc["paths"][INSTRUMENTS]) == {"post", "get"}
    assert set(doc["paths"][INSTRUMENTS + "/{instrument_id}"]) == {"delete"}
    assert {"InstrumentIn", "InstrumentView", "InstrumentList"} <= set(doc["components"]["schemas"])
