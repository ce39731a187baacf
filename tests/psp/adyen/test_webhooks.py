"""Adyen standard notifications: every item authenticated with Adyen's HMAC scheme, a forged or
tampered item rejects the whole delivery, and each eventCode becomes one paycell event."""
from __future__ import annotations

import asyncio
import copy
import json
import uuid

import msgspec
import pytest

from paycell.psp.adyen import sim_notify
from paycell.psp.adyen.connector import AdyenPsp
from paycell.psp.adyen.webhooks import verify
from paycell.psp.base import WebhookRejected

from tests.psp.adyen.test_connector import charge

# Adyen's documented example: this key and item give this signature.
DOC_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
DOC_ITEM = {
    "additionalData": {"hmacSignature": "coqCmt/IZ4E3CzPvMY8zTjQVL5hYJUiBRg8UU+iCWo0="},
    "amount": {"currency": "EUR", "value": 1130}, "eventCode": "AUTHORISATION",
    "eventDate": "2014-08-06T13:39:05+02:00", "merchantAccountCode": "TestMerchant",
    "merchantReference": "TestPayment-1407325143704", "operations": ["CANCEL", "CAPTURE", "REFUND"],
    "paymentMethod": "visa", "pspReference": "7914073381342284", "reason": "1234:7777:12/2012", "success": "true",
}


def body(*items: dict) -> bytes:
    return json.dumps({"live": "false", "notificationItems": [{"NotificationRequestItem": i} for i in items]}).encode()


def signed(settings, event_code: str = "AUTHORISATION", success: bool = True, **kw) -> dict:
    defaults = dict(psp_reference="PSPREF0000000001", merchant_reference=str(uuid.uuid4()), amount_minor=1_250,
                    currency="EUR", now_s=1_790_000_000.0)
    return sim_notify.item(event_code=event_code, success=success, merchant_account=settings.adyen_merchant_account,
                           hmac_key=settings.adyen_hmac_key, **(defaults | kw))


def check(settings, raw: bytes):
    return verify(raw, hmac_key=settings.adyen_hmac_key, merchant_account=settings.adyen_merchant_account)


def test_adyens_documented_example_verifies():
    [event] = verify(body(DOC_ITEM), hmac_key=DOC_KEY, merchant_account="TestMerchant")
    assert (event.event_id, event.kind, event.result.status) == ("7914073381342284:AUTHORISATION:true", "outcome",
                                                                 "succeeded")
    assert (event.order_id, event.amount_minor, event.currency) == ("TestPayment-1407325143704", 1130, "EUR")
    assert event.occurred_at_s == 1407325145.0


@pytest.mark.parametrize(("field", "value"), [
    ("pspReference", "7914073381342285"), ("merchantReference", "TestPayment-other"), ("success", "false"),
    ("eventCode", "CHARGEBACK"), ("amount", {"currency": "EUR", "value": 11300}),
    ("amount", {"currency": "USD", "value": 1130}), ("originalReference", "7914073381342284"),
    ("merchantAccountCode", "OtherMerchant"),
])
def test_a_tampered_signed_field_is_rejected(field, value):
    item = copy.deepcopy(DOC_ITEM) | {field: value}
    with pytest.raises(WebhookRejected, match="bad HMAC"):
        verify(body(item), hmac_key=DOC_KEY, merchant_account="TestMerchant")


def test_a_forged_item_rejects_the_whole_delivery(settings):
    genuine = signed(settings)
    forged = sim_notify.item(event_code="AUTHORISATION", success=True, merchant_account=settings.adyen_merchant_account,
                             hmac_key="AB" * 32, psp_reference="PSPREF0000000002", merchant_reference="order-2",
                             amount_minor=99_999, currency="EUR", now_s=1_790_000_000.0)
    assert len(check(settings, body(genuine))) == 1
    with pytest.raises(WebhookRejected, match="PSPREF0000000002"):
        check(settings, body(genuine, forged))


def test_a_tampered_item_in_a_batch_rejects_the_whole_delivery(settings):
    first, second = signed(settings), signed(settings, psp_reference="PSPREF0000000002")
    second["amount"]["value"] += 1
    with pytest.raises(WebhookRejected, match="bad HMAC"):
        check(settings, body(first, second))


@pytest.mark.parametrize("raw", [
    b"", b"not json", b"{}", b'{"live": "false", "notificationItems": []}',
    body({"pspReference": "X", "eventCode": "AUTHORISATION"}),  # no signature, no amount
])
def test_an_unreadable_delivery_is_rejected(settings, raw):
    with pytest.raises(WebhookRejected):
        check(settings, raw)


@pytest.mark.parametrize("signature", ["", None, 17])
def test_an_item_without_a_signature_is_rejected(settings, signature):
    item = signed(settings)
    if signature is None:
        del item["additionalData"]["hmacSignature"]
    else:
        item["additionalData"]["hmacSignature"] = signature
    with pytest.raises(WebhookRejected, match="hmacSignature"):
        check(settings, body(item))


def test_a_boolean_success_is_not_adyens_format_and_is_rejected(settings):
    item = signed(settings) | {"success": True}
    with pytest.raises(WebhookRejected, match="malformed"):
        check(settings, body(item))


def test_a_bad_hmac_key_setting_rejects_rather_than_crashes(settings):
    with pytest.raises(WebhookRejected):
        verify(body(signed(settings)), hmac_key="not hex", merchant_account=settings.adyen_merchant_account)
    with pytest.raises(WebhookRejected, match="no HMAC key"):
        verify(body(signed(settings)), hmac_key="", merchant_account=settings.adyen_merchant_account)


@pytest.mark.parametrize(("event_code", "success", "kind", "status", "code"), [
    ("AUTHORISATION", True, "outcome", "succeeded", None),
    ("AUTHORISATION", False, "outcome", "declined", "refused:Not enough balance"),
    ("PAYOUT_THIRDPARTY", True, "outcome", "succeeded", None),
    ("PAYOUT_THIRDPARTY", False, "outcome", "declined", "refused:Not enough balance"),
    ("PAYOUT_DECLINE", True, "outcome", "declined", "payout_declined"),
    ("PAYOUT_EXPIRE", True, "outcome", "declined", "payout_expired"),
    ("CHARGEBACK", True, "returned", None, "chargeback:Not enough balance"),
    ("REFUND", True, "returned", None, "refund"),
    ("CANCELLATION", True, "returned", None, "cancellation"),
    ("CANCEL_OR_REFUND", True, "returned", None, "cancel_or_refund"),
    ("CAPTURE_FAILED", True, "returned", None, "capture_failed"),
    ("REFUND", False, "ignored", None, None),
    ("CANCELLATION", False, "ignored", None, None),
    ("NOTIFICATION_OF_CHARGEBACK", True, "ignored", None, None),
    ("CHARGEBACK_REVERSED", True, "ignored", None, None),
    ("SECOND_CHARGEBACK", True, "ignored", None, None),
    ("CAPTURE", True, "ignored", None, None),
    ("REPORT_AVAILABLE", True, "ignored", None, None),
])
def test_each_event_code_becomes_one_event(settings, event_code, success, kind, status, code):
    original = "PAYMENT000000001" if event_code not in ("AUTHORISATION", "PAYOUT_THIRDPARTY") else None
    item = signed(settings, event_code, success, reason="Not enough balance", original_reference=original)
    [event] = check(settings, body(item))
    assert event.kind == kind and event.type == event_code
    assert event.event_id == f"PSPREF0000000001:{event_code}:{'true' if success else 'false'}"
    assert (event.result and event.result.status, event.result and event.result.decline_code) == (
        status, code if kind == "outcome" else None)
    assert event.return_code == (code if kind == "returned" else None)
    assert event.psp_reference == (original or "PSPREF0000000001")  # the payment's reference


def test_an_item_for_another_merchant_account_is_ignored(settings):
    item = sim_notify.item(event_code="AUTHORISATION", success=True, merchant_account="AnotherShop",
                           hmac_key=settings.adyen_hmac_key, psp_reference="PSPREF0000000001",
                           merchant_reference="x", amount_minor=1, currency="EUR", now_s=1_790_000_000.0)
    [event] = check(settings, body(item))
    assert event.kind == "ignored"


def test_an_old_event_date_is_accepted_because_adyen_retries_for_days(settings):
    [event] = check(settings, body(signed(settings, now_s=1_700_000_000.0)))
    assert event.kind == "outcome" and event.occurred_at_s == 1_700_000_000.0


async def test_the_connector_answers_accepted_and_a_duplicate_delivery_has_the_same_event_id(psp, sim, receiver):
    assert psp.webhook_response() == (200, "text/plain", b"[accepted]")
    await sim.call("POST", "/_sim/webhooks", {"url": receiver.url, "duplicate": True})
    c = charge("AUTHORISED000001")
    await psp.submit(c)
    events = await receiver.wait_for("AUTHORISATION", c.idempotency_key, count=2)
    assert len(events) == 2 and events[0] == events[1]
    assert receiver.rejected == []
    log = await sim.call("GET", "/_sim/webhooks")
    assert [d["delivered"] for d in log["deliveries"]] == [True, True]


async def test_a_receiver_with_another_key_rejects_the_simulators_deliveries(adyen_settings, sim, receiver):
    receiver.psp = AdyenPsp(msgspec.structs.replace(adyen_settings, adyen_hmac_key="CD" * 32))
    psp = AdyenPsp(adyen_settings)
    try:
        await psp.submit(charge("AUTHORISED000001"))
        for _ in range(200):
            if receiver.rejected:
                break
            await asyncio.sleep(0.02)
        assert receiver.rejected and receiver.events == []
    finally:
        await psp.close()
        await receiver.psp.close()
