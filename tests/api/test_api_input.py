"""Input that once got a 500 or the wrong answer (issue 6, item 11): crafted list cursors,
duplicate JSON keys, and a checkout UUID spelt another way."""
from __future__ import annotations

import base64
import datetime
import uuid

import msgspec
import pytest

from paycell.http.cursors import cursor_key, encode_cursor
from tests.api.support import PAYMENTS, call, error_of, get_as, payer, payin, post_payment, rows_for
from tests.helpers import auth_header, new_user


def _unsigned(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


PAYMENT_ID = "0b7f6c1e-6a7e-4c3c-9a55-2f0d8a1e4b21"
CRAFTED = {
    # The old cursor format; each timestamp overflows (or underflows) once converted to UTC.
    "year 9999, negative offset": _unsigned(f"9999-12-31T23:59:59-05:00 {PAYMENT_ID}"),
    "year 1, positive offset": _unsigned(f"0001-01-01T00:00:00+05:00 {PAYMENT_ID}"),
    "max microseconds, unsigned": _unsigned(f"253402300799999999 {PAYMENT_ID}") + ".AAAAAAAAAAAAAAAAAAAAAA",
    "no MAC": _unsigned(f"1700000000000000 {PAYMENT_ID}"),
    "not base64": "%%%.***",
    "empty": "",
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
async def test_a_crafted_cursor_is_a_400_not_a_500(api, settings, case):
    reply = await get_as(api, settings, new_user(), f"{PAYMENTS}?starting_after={CRAFTED[case]}")
    assert error_of(reply) == (400, "invalid_request")
    assert reply.json["error"]["field"] == "starting_after"


@pytest.mark.parametrize("microseconds", [253402300799999999, 10**30, -1])
async def test_a_signed_cursor_out_of_range_is_a_400(api, settings, microseconds):
    user = new_user()
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    cursor = encode_cursor(cursor_key(settings.jwt_secret), user, epoch, PAYMENT_ID)
    # The same cursor with another position, correctly MACed: only the bound can refuse it.
    forged = _resigned(settings, user, f"{microseconds} {PAYMENT_ID}")
    assert (await get_as(api, settings, user, f"{PAYMENTS}?starting_after={cursor}")).status == 200
    reply = await get_as(api, settings, user, f"{PAYMENTS}?starting_after={forged}")
    assert error_of(reply) == (400, "invalid_request")


def _resigned(settings, user: str, payload: str) -> str:
    from paycell.http import cursors
    raw = payload.encode()
    return f"{cursors._b64(raw)}.{cursors._b64(cursors._mac(cursor_key(settings.jwt_secret), user, raw))}"


async def test_a_cursor_works_only_for_the_user_it_was_given_to(api, settings):
    alice, mallory = await payer(api, settings, "alice"), new_user("mallory")
    for _ in range(3):
        await post_payment(api, settings, alice, payin(alice))
    page = await get_as(api, settings, alice, f"{PAYMENTS}?limit=1")
    cursor = page.json["next_cursor"]
    assert (await get_as(api, settings, alice, f"{PAYMENTS}?limit=1&starting_after={cursor}")).status == 200
    theirs = await get_as(api, settings, mallory, f"{PAYMENTS}?limit=1&starting_after={cursor}")
    assert error_of(theirs) == (400, "invalid_request")
    tampered = cursor[:-2] + ("AA" if not cursor.endswith("AA") else "BB")
    assert error_of(await get_as(api, settings, alice, f"{PAYMENTS}?starting_after={tampered}")) == (
        400, "invalid_request")


@pytest.mark.parametrize("key", ["amount", "payment_id", "to_acct"])
async def test_a_body_naming_a_key_twice_is_refused(api, settings, pool, key):
    user = new_user()
    body = payin(user, amount="1.00")
    encoded = msgspec.json.encode(body)
    second = msgspec.json.encode({key: body[key] if key != "amount" else "1000.00"})
    raw = encoded[:-1] + b"," + second[1:]  # {... "key": first, ..., "key": second}
    reply = await call(api, "POST", PAYMENTS, headers={"Content-Type": "application/json",
                                                       **auth_header(settings, user)}, data=raw)
    assert error_of(reply) == (400, "invalid_request")
    assert reply.json["error"]["field"] == key
    assert await rows_for(pool, user) == (0, 0, 0)


@pytest.mark.parametrize("spelling", [str.upper, lambda u: f"urn:uuid:{u}", lambda u: "{" + u + "}",
                                      lambda u: u.replace("-", "")])
async def test_the_same_checkout_uuid_spelt_another_way_replays(api, settings, pool, spelling):
    user = await payer(api, settings)
    payment_id = str(uuid.uuid4())
    first = await post_payment(api, settings, user, payin(user, payment_id=payment_id))
    again = await post_payment(api, settings, user, payin(user, payment_id=spelling(payment_id)))
    assert first.status == again.status == 202
    assert again.headers["Idempotent-Replayed"] == "true" and again.json == first.json
    assert await rows_for(pool, user) == (1, 1, 1)


async def test_a_payment_first_sent_with_an_upper_case_id_replays_in_lower_case(api, settings, pool):
    user = await payer(api, settings)
    payment_id = str(uuid.uuid4())
    first = await post_payment(api, settings, user, payin(user, payment_id=payment_id.upper()))
    assert first.json["payment_id"] == payment_id
    again = await post_payment(api, settings, user, payin(user, payment_id=payment_id))
    assert again.headers["Idempotent-Replayed"] == "true" and again.json == first.json
    assert await rows_for(pool, user) == (1, 1, 1)
