"""Adyen standard notifications: authenticate every item, then say what each means to paycell.

A delivery is `{"live": "false", "notificationItems": [{"NotificationRequestItem": {...}}, ...]}`.
Each item carries its own HMAC in `additionalData.hmacSignature` (HMAC-SHA256 with the hex key from
the Customer Area over pspReference, originalReference, merchantAccountCode, merchantReference,
amount value, amount currency, eventCode and success), checked with the Adyen SDK's
`util.is_valid_hmac_notification`. One forged, tampered or unreadable item rejects the whole
delivery: nothing of it is stored, and Adyen delivers it again.

The HMAC covers only those eight fields. `eventDate`, `reason` and the other additionalData are
not signed, so paycell trusts them for nothing that moves money: they become a decline or return
code's text and the event's timestamp only.

Event id: Adyen has none; its own advice is to deduplicate on (pspReference, eventCode, success),
all signed, so `event_id` is `<pspReference>:<eventCode>:<success>`.

Staleness: none enforced, on purpose. The fields a timestamp check would read (`eventDate`) are
unsigned, so a replayer could simply rewrite them; and Adyen retries an unacknowledged
notification for days (its queue holds events through a receiver's outage), so a tight window
would drop genuine events. Replays are stopped by the signed event id (the inbox stores each id
once) and by the state machine (a second outcome for a settled order changes nothing).

What each eventCode becomes:
  AUTHORISATION success=true     outcome succeeded (amount and currency set: the inbox must check
                                 them against the order; a partial authorisation has a lower one)
  AUTHORISATION success=false    outcome declined, code `refused:<reason>`
  PAYOUT_THIRDPARTY true/false   pay-out outcome succeeded / declined
  PAYOUT_DECLINE (success=true)  outcome declined `payout_declined` (a reviewer declined it)
  PAYOUT_EXPIRE (success=true)   outcome declined `payout_expired` (not confirmed in time)
  CHARGEBACK (success=true)      returned, code `chargeback:<reason>` (the money is debited now)
  REFUND, REFUND_FAILED of a refund paycell asked for (merchantReference `rev-<reversal id>`)
                                 reversal: success=true succeeded; success=false, or REFUND_FAILED
                                 (the scheme refused it after Adyen accepted it), failed
  REFUND, CANCELLATION, CANCEL_OR_REFUND (success=true), any other merchantReference
                                 returned, code `refund` / `cancellation` / `cancel_or_refund`:
                                 made in the Customer Area, and the money paycell credited is
                                 going back
  CAPTURE_FAILED (success=true)  returned, code `capture_failed`: an authorised payment whose
                                 capture failed never brings the money
  NOTIFICATION_OF_CHARGEBACK, REQUEST_FOR_INFORMATION
                                 ignored: notices; the money moves only at CHARGEBACK
  CHARGEBACK_REVERSED, SECOND_CHARGEBACK
                                 ignored: paycell posts one chargeback; a reversal followed by a
                                 second chargeback nets to the same one
  any other (CAPTURE, REPORT_AVAILABLE, PAIDOUT_REVERSED, modifications that failed ...)
                                 ignored (stored, marked applied; PAIDOUT_REVERSED, a pay-out that
                                 bounced back, is left for a human: see the report)
  an item for another merchant account (a company-level webhook)   ignored
"""
from __future__ import annotations

import binascii
import datetime
from typing import Any, Literal

import msgspec
from Adyen import util

from paycell.psp.base import PspResult, ReversalResult, WebhookEvent, WebhookRejected
from paycell.psp.adyen.wire import REVERSAL_REFERENCE

ITEMS_MAX = 100  # Adyen batches a few; anything near this is not Adyen

_RETURNS = {"CHARGEBACK": "chargeback", "REFUND": "refund", "CANCELLATION": "cancellation",
            "CANCEL_OR_REFUND": "cancel_or_refund", "CAPTURE_FAILED": "capture_failed"}
_PAYOUT_DECLINES = {"PAYOUT_DECLINE": "payout_declined", "PAYOUT_EXPIRE": "payout_expired"}
_REASON_CHARS_MAX = 100


class _Wrapper(msgspec.Struct):
    NotificationRequestItem: dict[str, Any]


class _Delivery(msgspec.Struct):
    notificationItems: list[_Wrapper]
    live: str = "false"


class _Amount(msgspec.Struct):
    currency: str
    value: int


class _Item(msgspec.Struct):
    """The fields paycell reads (the raw dict is what the HMAC is checked over)."""

    pspReference: str
    eventCode: str
    success: Literal["true", "false"]
    merchantAccountCode: str
    amount: _Amount
    additionalData: dict[str, Any]
    merchantReference: str | None = None
    originalReference: str | None = None
    eventDate: str | None = None
    reason: str | None = None


def verify(body: bytes, *, hmac_key: str, merchant_account: str) -> list[WebhookEvent]:
    """The events of one authentic delivery; WebhookRejected when any item is not authentic."""
    if not hmac_key:
        raise WebhookRejected("adyen: no HMAC key configured (PAYCELL_ADYEN_HMAC_KEY)")
    try:
        delivery = msgspec.json.decode(body, type=_Delivery)
    except msgspec.DecodeError as exc:
        raise WebhookRejected(f"adyen: unreadable notification: {exc}") from None
    if not 0 < len(delivery.notificationItems) <= ITEMS_MAX:
        raise WebhookRejected(f"adyen: a delivery holds 1..{ITEMS_MAX} items, not {len(delivery.notificationItems)}")
    items = [_authentic(wrapper.NotificationRequestItem, hmac_key) for wrapper in delivery.notificationItems]
    return [_event(item, merchant_account) for item in items]


def _authentic(raw: dict[str, Any], hmac_key: str) -> _Item:
    try:
        item = msgspec.convert(raw, type=_Item)
    except msgspec.ValidationError as exc:
        raise WebhookRejected(f"adyen: malformed notification item: {exc}") from None
    signature = item.additionalData.get("hmacSignature")
    if not isinstance(signature, str) or not signature:
        raise WebhookRejected(f"adyen: item {item.pspReference} carries no hmacSignature")
    try:
        valid = util.is_valid_hmac_notification(raw, hmac_key)
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise WebhookRejected(f"adyen: cannot check item {item.pspReference}: {type(exc).__name__}") from None
    if not valid:
        raise WebhookRejected(f"adyen: bad HMAC on item {item.pspReference} ({item.eventCode})")
    return item


def _event(item: _Item, merchant_account: str) -> WebhookEvent:
    success = item.success == "true"
    payment_ref = item.originalReference or item.pspReference
    base = dict(event_id=f"{item.pspReference}:{item.eventCode}:{item.success}", type=item.eventCode,
                order_id=item.merchantReference or None, psp_reference=payment_ref,
                amount_minor=item.amount.value, currency=item.amount.currency,
                occurred_at_s=_timestamp_s(item.eventDate))
    reason = (item.reason or "")[:_REASON_CHARS_MAX]
    code = item.eventCode
    if item.merchantAccountCode != merchant_account:
        return WebhookEvent(kind="ignored", **base)
    reversal_id = _reversal_id(item.merchantReference)
    if reversal_id is not None and code in ("REFUND", "REFUND_FAILED"):
        ok = success and code == "REFUND"
        result = ReversalResult(status="succeeded" if ok else "failed", psp_reference=item.pspReference,
                                failure_code=None if ok else ("refund_failed:" + reason if reason else "refund_failed"))
        return WebhookEvent(kind="reversal", reversal_id=reversal_id, reversal=result,
                            **{**base, "order_id": None})
    if code in ("AUTHORISATION", "PAYOUT_THIRDPARTY"):
        if success:
            result = PspResult(status="succeeded", psp_reference=payment_ref)
        else:
            result = PspResult(status="declined", psp_reference=payment_ref,
                               decline_code="refused:" + reason if reason else "refused")
        return WebhookEvent(kind="outcome", result=result, **base)
    if code in _PAYOUT_DECLINES and success:
        result = PspResult(status="declined", psp_reference=payment_ref, decline_code=_PAYOUT_DECLINES[code])
        return WebhookEvent(kind="outcome", result=result, **base)
    if code in _RETURNS and success:
        return_code = _RETURNS[code] + (f":{reason}" if code == "CHARGEBACK" and reason else "")
        return WebhookEvent(kind="returned", return_code=return_code, **base)
    return WebhookEvent(kind="ignored", **base)


def _reversal_id(merchant_reference: str | None) -> str | None:
    """The reversal id a refund paycell asked for carries as its reference (`rev-<uuid>`)."""
    match = REVERSAL_REFERENCE.fullmatch(merchant_reference or "")
    return match.group(1) if match else None


def _timestamp_s(event_date: str | None) -> float | None:
    """Adyen's eventDate (ISO 8601 with an offset, e.g. 2026-11-25T10:00:00+01:00) in epoch seconds.
    Unsigned and informational: an unreadable one is left out, never a reason to drop an event."""
    if not event_date:
        return None
    try:
        moment = datetime.datetime.fromisoformat(event_date)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.timestamp()
