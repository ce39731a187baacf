"""Stripe webhook deliveries: verified with the SDK (`Stripe-Signature: t=<unix s>,v1=<hex
HMAC-SHA256 of "<t>.<raw body>">` under the endpoint's signing secret, at most 300 s old), then
read as paycell's `WebhookEvent`s. One delivery carries one event; its id (`evt_...`) is the
inbox key, so Stripe's retries and duplicates collapse.

Events and what they mean to paycell:
    payment_intent.succeeded / .processing / .requires_action / .payment_failed / .canceled
        outcome: the intent's status read as `wire.result_of` reads it (payment_failed is a decline,
        with Stripe's code: card decline codes, or for ACH `insufficient_funds`, `account_closed`,
        `no_account`, `invalid_account_number`, `debit_not_authorized` ...)
    charge.dispute.created
        returned: money Stripe had paid is taken back. Stripe reports an ACH debit that fails after
        it succeeded (a late return, e.g. R10 "not authorised", up to 60 days on) as a dispute,
        and card chargebacks arrive the same way (the disputed amount leaves the balance at once).
        `return_code` is the NACHA code Stripe's reason stands for, else Stripe's reason. A
        dispute names the PaymentIntent (`psp_reference`) but not paycell's order id.
    anything else
        ignored
"""
from __future__ import annotations

from collections.abc import Mapping

import msgspec
import stripe

from paycell.psp.base import PspTransientError, WebhookEvent, WebhookRejected
from paycell.psp.stripe.wire import ACH_RETURN_CODES, ORDER_ID_KEY, PaymentIntent, result_of

TOLERANCE_S = 300
SIGNATURE_HEADER = "Stripe-Signature"

OUTCOME_EVENTS = frozenset({"payment_intent.succeeded", "payment_intent.processing", "payment_intent.requires_action",
                            "payment_intent.payment_failed", "payment_intent.canceled"})
RETURN_EVENTS = frozenset({"charge.dispute.created"})



class _Data(msgspec.Struct):
    object: msgspec.Raw


class Event(msgspec.Struct):
    id: str
    type: str
    created: int
    data: _Data


class Dispute(msgspec.Struct):
    id: str
    amount: int
    currency: str
    reason: str | None = None
    charge: str | None = None
    payment_intent: str | None = None


def parse(headers: Mapping[str, str], body: bytes, secret: str) -> list[WebhookEvent]:
    """The events of one authentic delivery; WebhookRejected for a forged, stale or unreadable one."""
    header = _header(headers, SIGNATURE_HEADER)
    try:
        stripe.WebhookSignature.verify_header(body, header, secret, tolerance=TOLERANCE_S)
    except (stripe.SignatureVerificationError, UnicodeDecodeError) as exc:
        raise WebhookRejected(f"stripe: {exc}") from exc
    try:
        event = msgspec.json.decode(body, type=Event)
        return [_read(event)]
    except (msgspec.DecodeError, msgspec.ValidationError, PspTransientError) as exc:
        raise WebhookRejected(f"stripe: unreadable event: {exc}") from exc


def _read(event: Event) -> WebhookEvent:
    if event.type in OUTCOME_EVENTS:
        intent = msgspec.json.decode(event.data.object, type=PaymentIntent)
        return WebhookEvent(event_id=event.id, kind="outcome", type=event.type,
                            order_id=intent.metadata.get(ORDER_ID_KEY), psp_reference=intent.id,
                            result=result_of(intent), amount_minor=intent.amount,
                            currency=intent.currency.upper(), occurred_at_s=float(event.created))
    if event.type in RETURN_EVENTS:
        dispute = msgspec.json.decode(event.data.object, type=Dispute)
        reason = dispute.reason or "disputed"
        return WebhookEvent(event_id=event.id, kind="returned", type=event.type,
                            psp_reference=dispute.payment_intent or dispute.charge,
                            return_code=ACH_RETURN_CODES.get(reason, reason), amount_minor=dispute.amount,
                            currency=dispute.currency.upper(), occurred_at_s=float(event.created))
    return WebhookEvent(event_id=event.id, kind="ignored", type=event.type, occurred_at_s=float(event.created))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)
