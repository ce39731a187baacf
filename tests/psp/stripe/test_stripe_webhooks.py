"""Stripe webhook verification and parsing: authentic deliveries become events; forged, stale,
tampered or unsigned ones are refused."""
from __future__ import annotations

import json
import time

import pytest

from paycell.psp.base import WebhookRejected
from paycell.psp.stripe import connector
from paycell.psp.stripe.sim_state import sign

SECRET = "whsec_test_0123456789abcdef"


@pytest.fixture
def psp():
    return connector.StripePsp(api_base_url="http://127.0.0.1:9", api_key="sk_test_x", webhook_secret=SECRET,
                               timeout_s=1, return_url=None)


def event(type_: str, obj: dict, event_id: str = "evt_1") -> bytes:
    return json.dumps({"id": event_id, "object": "event", "type": type_, "created": 1_764_000_000,
                       "data": {"object": obj}, "livemode": False}).encode()


def intent(status: str, **fields) -> dict:
    return {"id": "pi_1", "object": "payment_intent", "status": status, "amount": 1_999, "currency": "usd",
            "metadata": {"paycell_order_id": "order-1"}, **fields}


async def test_an_authentic_succeeded_event_is_an_outcome(psp):
    body = event("payment_intent.succeeded", intent("succeeded"))
    [e] = await psp.verify_webhook({"Stripe-Signature": sign(body, SECRET)}, body)
    assert (e.event_id, e.kind, e.type, e.order_id, e.psp_reference) == (
        "evt_1", "outcome", "payment_intent.succeeded", "order-1", "pi_1")
    assert e.result.status == "succeeded" and (e.amount_minor, e.currency) == (1_999, "USD")
    assert e.occurred_at_s == 1_764_000_000


async def test_header_names_are_matched_without_regard_to_case(psp):
    body = event("payment_intent.processing", intent("processing"))
    [e] = await psp.verify_webhook({"stripe-signature": sign(body, SECRET)}, body)
    assert e.result.status == "pending"


@pytest.mark.parametrize("type_, obj, status, code", [
    ("payment_intent.payment_failed",
     intent("requires_payment_method", last_payment_error={"code": "card_declined", "decline_code": "lost_card"}),
     "declined", "lost_card"),
    ("payment_intent.payment_failed",
     intent("requires_payment_method", last_payment_error={"code": "account_closed"}), "declined", "account_closed"),
    ("payment_intent.canceled", intent("canceled", cancellation_reason="abandoned"), "declined", "canceled_abandoned"),
    ("payment_intent.requires_action",
     intent("requires_action", next_action={"type": "redirect_to_url", "redirect_to_url": {"url": "https://x/3ds"}}),
     "requires_action", None),
])
async def test_each_payment_intent_event_maps_to_its_outcome(psp, type_, obj, status, code):
    body = event(type_, obj)
    [e] = await psp.verify_webhook({"Stripe-Signature": sign(body, SECRET)}, body)
    assert (e.kind, e.result.status, e.result.decline_code) == ("outcome", status, code)
    if status == "requires_action":
        assert e.result.action_url == "https://x/3ds"


async def test_a_dispute_is_a_return_with_the_nacha_code(psp):
    dispute = {"id": "dp_1", "object": "dispute", "amount": 500, "currency": "usd", "charge": "ch_1",
               "payment_intent": "pi_1", "reason": "insufficient_funds", "status": "lost"}
    body = event("charge.dispute.created", dispute)
    [e] = await psp.verify_webhook({"Stripe-Signature": sign(body, SECRET)}, body)
    assert (e.kind, e.return_code, e.psp_reference, e.amount_minor, e.order_id) == ("returned", "R01", "pi_1", 500, None)


async def test_other_events_are_ignored(psp):
    body = event("customer.created", {"id": "cus_1", "object": "customer"}, "evt_9")
    [e] = await psp.verify_webhook({"Stripe-Signature": sign(body, SECRET)}, body)
    assert (e.kind, e.event_id, e.type) == ("ignored", "evt_9", "customer.created")


@pytest.mark.parametrize("case", ["forged", "stale", "tampered", "unsigned", "garbage_header", "not_json"])
async def test_unauthentic_or_stale_deliveries_are_refused(psp, case):
    body = event("payment_intent.succeeded", intent("succeeded"))
    headers = {"Stripe-Signature": sign(body, SECRET)}
    if case == "forged":
        headers = {"Stripe-Signature": sign(body, "whsec_someone_else")}
    elif case == "stale":
        headers = {"Stripe-Signature": sign(body, SECRET, int(time.time()) - 301)}
    elif case == "tampered":
        body = body.replace(b"1999", b"9999")
    elif case == "unsigned":
        headers = {}
    elif case == "garbage_header":
        headers = {"Stripe-Signature": "v1=abc"}
    elif case == "not_json":
        body = b"not json"
        headers = {"Stripe-Signature": sign(body, SECRET)}
    with pytest.raises(WebhookRejected):
        await psp.verify_webhook(headers, body)


async def test_a_signature_within_the_tolerance_is_accepted(psp):
    body = event("payment_intent.succeeded", intent("succeeded"))
    [e] = await psp.verify_webhook({"Stripe-Signature": sign(body, SECRET, int(time.time()) - 240)}, body)
    assert e.kind == "outcome"


def test_the_webhook_answer_is_a_200(psp):
    assert psp.webhook_response()[0] == 200
