"""The Stripe connector against localstripe, a fake Stripe nobody here wrote: it catches wire
mistakes paycell's own simulator would share. Only the flows localstripe supports: a card
payment, its declining card (4000000000000341 / pm_card_chargeCustomerFail), 3-D Secure completed
through its `_authenticate` endpoint, and its signed webhooks. It ignores Idempotency-Key, has no
search API, refuses `return_url` and answers 3-D Secure with `use_stripe_sdk` (no redirect URL):
those cases are tested on paycell's simulator (test_stripe_connector.py)."""
from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
import time
import uuid

import aiohttp
import pytest

from paycell.psp.base import Charge, WebhookRejected
from paycell.psp.stripe.connector import StripePsp

START_TIMEOUT_S = 20.0
API_KEY = f"sk_test_{secrets.token_hex(12)}"
WEBHOOK_SECRET = f"whsec_{secrets.token_hex(16)}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def localstripe(tmp_path_factory):
    """localstripe in its own process on a free 127.0.0.1 port, with a state file of its own."""
    port = _free_port()
    state = tmp_path_factory.mktemp("localstripe") / "localstripe.pickle"
    log = open(state.with_suffix(".log"), "wb")
    proc = subprocess.Popen([sys.executable, "-m", "tests.psp.stripe.localstripe_server", "--port", str(port),
                             "--state", str(state)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert proc.poll() is None, f"localstripe exited with {proc.returncode}; see {log.name}"
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, f"localstripe did not listen on {port}"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
        assert state.exists()  # it kept its objects where it was told, not in /tmp/localstripe.pickle
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture
async def psp(localstripe):
    # localstripe refuses `return_url`: the connector sends none when it has none configured.
    adapter = StripePsp(api_base_url=localstripe, api_key=API_KEY, webhook_secret=WEBHOOK_SECRET, timeout_s=5,
                        return_url=None)
    yield adapter
    await adapter.close()


@pytest.fixture
async def http(localstripe):
    async with aiohttp.ClientSession(base_url=localstripe,
                                     headers={"Authorization": f"Bearer {API_KEY}"}) as session:
        yield session


def charge(instrument: str, **fields) -> Charge:
    return Charge(idempotency_key=str(uuid.uuid4()), direction="payin", amount_minor=2_000, currency="EUR",
                  instrument=instrument, **fields)


def with_reference(c: Charge, reference: str) -> Charge:
    return Charge(**{**{f: getattr(c, f) for f in c.__struct_fields__}, "psp_reference": reference})


async def test_a_card_payment_succeeds_with_the_order_in_its_metadata(psp, http):
    c = charge("pm_card_visa")
    result = await psp.submit(c)
    assert result.status == "succeeded" and result.psp_reference.startswith("pi_")
    async with http.get(f"/v1/payment_intents/{result.psp_reference}") as response:
        intent = await response.json()
    assert (intent["amount"], intent["currency"], intent["metadata"]) == (2_000, "eur", {"paycell_order_id": c.idempotency_key})
    assert await psp.status(with_reference(c, result.psp_reference)) == result


async def card_method(http, number: str) -> str:
    async with http.post("/v1/payment_methods", data={
            "type": "card", "card[number]": number, "card[exp_month]": "12", "card[exp_year]": "2034",
            "card[cvc]": "123"}) as response:
        assert response.status == 200, await response.text()
        return (await response.json())["id"]


async def test_its_declining_card_is_a_decline_not_an_error(psp, http):
    for instrument in ("pm_card_chargeCustomerFail", await card_method(http, "4000000000000341")):
        result = await psp.submit(charge(instrument))
        assert (result.status, result.decline_code) == ("declined", "card_declined")
        assert result.psp_reference  # localstripe names the failed charge, not the intent


async def test_three_d_secure_requires_action_then_succeeds_through_authenticate(psp, http):
    c = charge(await card_method(http, "4000002760003184"))
    result = await psp.submit(c)
    assert result.status == "requires_action" and result.action_url is None  # use_stripe_sdk, no redirect
    async with http.get(f"/v1/payment_intents/{result.psp_reference}") as response:
        client_secret = (await response.json())["client_secret"]
    async with http.post(f"/v1/payment_intents/{result.psp_reference}/_authenticate",
                         data={"client_secret": client_secret, "success": "true"}) as response:
        assert response.status == 200, await response.text()
    done = await psp.status(with_reference(c, result.psp_reference))
    assert done is not None and (done.status, done.psp_reference) == ("succeeded", result.psp_reference)


async def test_its_webhooks_verify_and_parse(psp, http, receiver):
    """localstripe signs as Stripe does; `verify_webhook` accepts its deliveries and refuses them
    under another secret."""
    endpoint = f"paycell_{secrets.token_hex(4)}"
    async with http.post(f"/_config/webhooks/{endpoint}", data={
            "url": receiver.url, "secret": WEBHOOK_SECRET, "events[]": "payment_intent.succeeded"}) as response:
        assert response.status == 200, await response.text()
    c = charge("pm_card_visa")
    result = await psp.submit(c)

    def succeeded(body: bytes) -> bool:
        event = json.loads(body)
        return event["data"]["object"]["id"] == result.psp_reference

    headers, body = await receiver.wait_for(succeeded, timeout_s=15)
    [event] = await psp.verify_webhook(headers, body)
    assert (event.kind, event.type, event.order_id, event.psp_reference) == (
        "outcome", "payment_intent.succeeded", c.idempotency_key, result.psp_reference)
    assert event.result.status == "succeeded" and event.event_id.startswith("evt_")
    other = StripePsp(api_base_url="http://127.0.0.1:9", api_key=API_KEY, webhook_secret="whsec_other",
                      timeout_s=1, return_url=None)
    with pytest.raises(WebhookRejected):
        await other.verify_webhook(headers, body)
