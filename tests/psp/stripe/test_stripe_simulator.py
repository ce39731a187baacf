"""The Stripe simulator's wire conventions, seen with a plain HTTP client: Stripe's error shape,
its key check, its idempotency replay and refusal, and what it stores (nothing) for a request it
refuses as invalid."""
from __future__ import annotations

import uuid

import pytest

from paycell.psp.stripe.forms import FormError, unflatten


def form(**extra) -> dict:
    return {"amount": "1000", "currency": "usd", "payment_method": "pm_card_visa",
            "payment_method_types[0]": "card", "confirm": "true",
            "metadata[paycell_order_id]": str(uuid.uuid4()), **extra}


@pytest.fixture
def api(settings, http):
    async def post(path: str, data: dict, *, key: str | None = None, api_key: str | None = None):
        headers = {"Authorization": f"Bearer {api_key or settings.stripe_api_key}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        async with http.post(settings.stripe_api_base_url + path, data=data, headers=headers) as response:
            return response.status, dict(response.headers), await response.json()
    return post


async def test_a_wrong_secret_key_is_a_401_in_stripes_error_shape(api, sim):
    status, headers, body = await api("/v1/payment_intents", form(), api_key="sk_test_nope")
    assert status == 401 and body["error"]["type"] == "invalid_request_error" and headers["Request-Id"].startswith("req_")
    assert await sim.charges() == []


async def test_same_key_same_parameters_replays_the_stored_answer(api, sim):
    data, key = form(), str(uuid.uuid4())
    first = await api("/v1/payment_intents", data, key=key)
    again = await api("/v1/payment_intents", data, key=key)
    assert first[0] == again[0] == 200 and first[2] == again[2]
    assert again[1]["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first[1]
    assert len(await sim.charges()) == 1


async def test_same_key_other_parameters_is_an_idempotency_error(api, sim):
    key = str(uuid.uuid4())
    await api("/v1/payment_intents", form(), key=key)
    status, _, body = await api("/v1/payment_intents", form(amount="2000"), key=key)
    assert status == 400 and body["error"]["type"] == "idempotency_error"
    assert len(await sim.charges()) == 1


async def test_a_declined_attempt_is_a_402_naming_the_failed_intent_and_replays_as_such(api, sim):
    data, key = form(payment_method="pm_card_visa_chargeDeclinedLostCard"), str(uuid.uuid4())
    status, _, body = await api("/v1/payment_intents", data, key=key)
    assert status == 402
    error = body["error"]
    assert (error["type"], error["code"], error["decline_code"]) == ("card_error", "card_declined", "lost_card")
    assert error["payment_intent"]["status"] == "requires_payment_method"
    assert (await api("/v1/payment_intents", data, key=key))[2] == body


@pytest.mark.parametrize("extra, code", [
    ({"colour": "blue"}, "parameter_unknown"),
    ({"amount": "12.5"}, "parameter_invalid_integer"),
    ({"amount": "20"}, "amount_too_small"),
    ({"payment_method": "pm_card_nonesuch"}, "resource_missing"),
    ({"payment_method": "pm_usBankAccount_success"}, "payment_intent_incompatible_payment_method"),
])
async def test_invalid_requests_are_400s_and_store_nothing_under_the_key(api, sim, extra, code):
    key = str(uuid.uuid4())
    status, _, body = await api("/v1/payment_intents", form(**extra), key=key)
    assert status == 400 and body["error"]["code"] == code
    assert (await api("/v1/payment_intents", form(), key=key))[0] == 200  # the key was not used up
    assert len(await sim.charges()) == 1


async def test_an_injected_outage_answers_in_stripes_error_shape(api, sim):
    await sim.faults(outage=True)
    status, _, body = await api("/v1/payment_intents", form())
    assert status == 503 and body["error"]["type"] == "api_error"


def test_bracket_notation_is_read_back_as_stripe_reads_it():
    assert unflatten([("a[b][c]", "1"), ("l[1]", "y"), ("l[0]", "x"), ("s", "v")]) == {
        "a": {"b": {"c": "1"}}, "l": ["x", "y"], "s": "v"}
    for bad in ([("a", "1"), ("a[b]", "2")], [("l[0]", "x"), ("l[2]", "z")], [("a[]", "1")], [("a[b", "1")]):
        with pytest.raises(FormError):
            unflatten(bad)
