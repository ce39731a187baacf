"""Modern Treasury's webhook scheme: signing (the simulator) and verifying (the connector).

Every delivery carries `X-Signature`, the hex HMAC-SHA256 of the raw body keyed with the
organization's webhook key, and `X-Webhook-ID`, the delivery's unique id (a retry of the same
event keeps it: the provider documents it as the key to process each webhook once). The body is
`{"event": <name>, "data": <the payment order>}`.

Staleness: the scheme signs no timestamp (unlike Stripe's `t=`), and the provider retries a
failed delivery with backoff for a long time, so a delivery's age cannot be told apart from a
legitimate late retry. Refusing old deliveries would drop late ACH returns, which is worse than a
replay: a replayed body carries the same X-Webhook-ID (the inbox stores it once), and one whose
X-Webhook-ID was altered (the header is outside the signature) describes a transition the order
has already made, which the apply actor must treat as a no-op.
"""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

import msgspec

from paycell.psp.base import PspResult, WebhookEvent, WebhookRejected
from paycell.psp.bank import wire

SIGNATURE_HEADER = "X-Signature"
WEBHOOK_ID_HEADER = "X-Webhook-ID"
TOPIC_HEADER = "X-Topic"
LIVE_HEADER = "X-Live"
WEBHOOK_ID_CHARS_MAX = 255

# Payment order events that end it without moving money (an outcome paycell records as a decline).
_DECLINE_EVENTS = frozenset({"failed", "cancelled", "denied"})


def signature(webhook_key: str, body: bytes) -> str:
    return hmac.new(webhook_key.encode(), body, hashlib.sha256).hexdigest()


def signed_headers(webhook_key: str, webhook_id: str, body: bytes, *, live: bool = False) -> dict[str, str]:
    """The headers the provider sends with one payment order delivery."""
    return {"Content-Type": "application/json", SIGNATURE_HEADER: signature(webhook_key, body),
            WEBHOOK_ID_HEADER: webhook_id, TOPIC_HEADER: "payment_order", LIVE_HEADER: str(live).lower()}


def verify(webhook_key: str, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
    """The event of one authentic delivery; WebhookRejected for a forged or unreadable one."""
    if not webhook_key:
        raise WebhookRejected("bank: no webhook key configured (PAYCELL_BANK_WEBHOOK_SECRET)")
    lowered = {k.lower(): v for k, v in headers.items()}
    given = lowered.get(SIGNATURE_HEADER.lower(), "").strip().lower().encode("utf-8", "replace")
    if not given or not hmac.compare_digest(given, signature(webhook_key, body).encode()):
        raise WebhookRejected("bank: X-Signature does not match the body")
    webhook_id = lowered.get(WEBHOOK_ID_HEADER.lower(), "").strip()
    if not 0 < len(webhook_id) <= WEBHOOK_ID_CHARS_MAX:
        raise WebhookRejected("bank: X-Webhook-ID is missing or too long")
    try:
        envelope = msgspec.json.decode(body, type=_Envelope)
        # The resource's type from the signed body, not from X-Topic (a header outside the signature).
        topic = msgspec.json.decode(envelope.data, type=_Object).object
        if topic != "payment_order":
            # Authentic, about another resource (expected payments, returns, transactions ...).
            return [WebhookEvent(event_id=webhook_id, kind="ignored", type=f"{topic}.{envelope.event}")]
        order = msgspec.json.decode(envelope.data, type=wire.PaymentOrder)
    except msgspec.DecodeError as exc:
        raise WebhookRejected(f"bank: unreadable webhook body: {exc}") from exc
    return [event(webhook_id, wire.WebhookBody(event=envelope.event, data=order))]


class _Envelope(msgspec.Struct):
    event: str
    data: msgspec.Raw


class _Object(msgspec.Struct):
    object: str = ""


def event(webhook_id: str, envelope: wire.WebhookBody) -> WebhookEvent:
    """One payment order event in paycell's words.

    A return with no posted transaction behind it (the receiving bank refused the entry before it
    settled: R01, R02, R03 ...) is the charge's outcome, a decline. A return of a payment order that
    had completed (transaction_ids holds the posted transaction: a late R07/R10/R29) takes back money
    paycell may already have booked: kind "returned", with the R-code. A reversal is always the latter.
    """
    order = envelope.data
    if wire.REVERSAL_ID_KEY in order.metadata:
        # The credit that refunds a pay-in (paycell's reversal): its `reverse` step follows it.
        return WebhookEvent(event_id=webhook_id, kind="ignored", type=f"payment_order.{envelope.event}",
                            psp_reference=order.id)
    common = dict(event_id=webhook_id, type=f"payment_order.{envelope.event}", psp_reference=order.id,
                  order_id=order.metadata.get(wire.ORDER_ID_KEY), amount_minor=order.amount,
                  currency=order.currency, occurred_at_s=wire.parse_timestamp_s(order.updated_at))
    name = envelope.event
    if name == "completed":
        return WebhookEvent(kind="outcome", result=PspResult(status="succeeded", psp_reference=order.id), **common)
    if name in _DECLINE_EVENTS or (name == "returned" and not order.transaction_ids):
        declined = PspResult(status="declined", psp_reference=order.id, decline_code=wire.decline_code(order))
        return WebhookEvent(kind="outcome", result=declined, **common)
    if name == "returned":
        code = order.current_return.code if order.current_return and order.current_return.code else "unknown"
        return WebhookEvent(kind="returned", return_code=code, **common)
    if name == "reversed":
        return WebhookEvent(kind="returned", return_code="reversed", **common)
    # created, approved, begin_processing, finish_processing, acknowledged, confirmed,
    # tentatively_reconciled, updated ...: still in flight; the outcome comes later.
    return WebhookEvent(kind="ignored", **common)
