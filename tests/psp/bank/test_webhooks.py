"""The simulator's deliveries are signed as Modern Treasury signs them (X-Signature: hex
HMAC-SHA256 of the raw body with the webhook key) and the connector accepts exactly those."""
from __future__ import annotations

import datetime

import msgspec
import pytest

from paycell.psp.bank import calendar, webhooks
from paycell.psp.base import WebhookRejected
from tests.psp.bank.conftest import charge

MONDAY = 0


async def _settled_pay_in(bank, psp):
    """A pay-in submitted Monday morning and settled on Wednesday; returns (charge, settlement time)."""
    monday_s = await bank.advance_to_next(MONDAY, datetime.time(9, 0))
    c = charge("payin")
    await psp.submit(c)
    settled_s = calendar.settlement_s(calendar.date_of(monday_s), 2)
    await bank.advance_to(settled_s)
    assert await bank.wait_for_events(3) == ["begin_processing", "finish_processing", "completed"]
    return c, settled_s


async def test_a_delivery_verifies_and_names_the_order_its_outcome_and_its_id(bank, psp, settings):
    c, settled_s = await _settled_pay_in(bank, psp)
    headers, body = bank.received.deliveries[-1]
    assert headers["X-Signature"] == webhooks.signature(settings.bank_webhook_secret, body)
    [event] = await psp.verify_webhook(headers, body)
    assert event.event_id == headers["X-Webhook-ID"]
    assert (event.kind, event.type, event.result.status, event.order_id) == (
        "outcome", "payment_order.completed", "succeeded", c.idempotency_key)
    assert (event.amount_minor, event.currency, event.occurred_at_s) == (c.amount_minor, "USD", settled_s)
    assert event.psp_reference == event.result.psp_reference
    # In-flight events are authentic but carry no outcome.
    for headers, body in bank.received.deliveries[:2]:
        [early] = await psp.verify_webhook(headers, body)
        assert early.kind == "ignored" and early.result is None
    assert psp.webhook_response()[0] == 200


async def test_forged_or_unreadable_deliveries_are_refused(bank, psp, settings):
    await _settled_pay_in(bank, psp)
    headers, body = bank.received.deliveries[-1]
    payload = msgspec.json.decode(body)
    payload["data"]["amount"] += 1
    tampered = msgspec.json.encode(payload)
    with pytest.raises(WebhookRejected, match="X-Signature"):
        await psp.verify_webhook(headers, tampered)
    with pytest.raises(WebhookRejected, match="X-Signature"):  # signed with another key
        await psp.verify_webhook({**headers, "X-Signature": webhooks.signature("not-the-key", body)}, body)
    unsigned = {k: v for k, v in headers.items() if k != "X-Signature"}
    with pytest.raises(WebhookRejected, match="X-Signature"):
        await psp.verify_webhook(unsigned, body)
    no_id = {k: v for k, v in headers.items() if k != "X-Webhook-ID"}
    with pytest.raises(WebhookRejected, match="X-Webhook-ID"):
        await psp.verify_webhook(no_id, body)
    garbage = b'{"event": "completed"}'
    with pytest.raises(WebhookRejected, match="unreadable"):
        await psp.verify_webhook({**headers, "X-Signature": webhooks.signature(settings.bank_webhook_secret, garbage)}, garbage)
    # Header names are case-insensitive, as HTTP has them.
    lowered = {k.lower(): v for k, v in headers.items()}
    assert (await psp.verify_webhook(lowered, body))[0].kind == "outcome"


async def test_a_duplicated_delivery_carries_the_same_event_id(bank, psp):
    await bank.sim("POST", "webhooks", {"url": (await bank.sim("GET", "webhooks"))["config"]["url"],
                                        "duplicate": True})
    await _settled_pay_in_duplicated(bank, psp)
    completed = [(h, b) for h, b in bank.received.deliveries if msgspec.json.decode(b)["event"] == "completed"]
    assert len(completed) == 2
    events = [(await psp.verify_webhook(h, b))[0] for h, b in completed]
    assert events[0].event_id == events[1].event_id  # what the inbox stores once
    assert events[0] == events[1]


async def _settled_pay_in_duplicated(bank, psp):
    monday_s = await bank.advance_to_next(MONDAY, datetime.time(9, 0))
    await psp.submit(charge("payin"))
    await bank.advance_to(calendar.settlement_s(calendar.date_of(monday_s), 2))
    assert sorted(await bank.wait_for_events(6)) == sorted(["begin_processing", "finish_processing", "completed"] * 2)


async def test_a_connector_without_a_webhook_key_refuses_every_delivery(bank, psp, settings):
    from paycell.psp import registry
    await _settled_pay_in(bank, psp)
    headers, body = bank.received.deliveries[-1]
    keyless = registry.adapter_for("bank", msgspec.structs.replace(settings, bank_webhook_secret=""))
    with pytest.raises(WebhookRejected, match="no webhook key"):
        await keyless.verify_webhook(headers, body)
    assert registry.module("bank").missing(msgspec.structs.replace(settings, bank_webhook_secret="")) == \
        "PAYCELL_BANK_WEBHOOK_SECRET"
    assert registry.module("bank").missing(settings) is None


async def test_an_authentic_event_about_another_resource_is_acknowledged_and_ignored(psp, settings):
    body = b'{"event": "reconciled", "data": {"id": "ep_1", "object": "expected_payment"}}'
    headers = webhooks.signed_headers(settings.bank_webhook_secret, "wh-1", body)
    headers["X-Topic"] = "expected_payment"
    [event] = await psp.verify_webhook(headers, body)
    assert (event.event_id, event.kind, event.type) == ("wh-1", "ignored", "expected_payment.reconciled")
    # The type comes from the signed body: a header claiming otherwise changes nothing.
    assert (await psp.verify_webhook({**headers, "X-Topic": "payment_order"}, body))[0].kind == "ignored"
    with pytest.raises(WebhookRejected):  # a non-ASCII signature is a forgery, not a crash
        await psp.verify_webhook({**headers, "X-Signature": "é" * 64}, body)
