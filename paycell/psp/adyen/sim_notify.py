"""The Adyen simulator's standard notifications: one item per delivery in Adyen's batch envelope,
signed with the HMAC key exactly as Adyen signs (the SDK's `generate_notification_sig`), handed to
the kit's outbox, which delivers (retrying, twice, late or out of order on demand)."""
from __future__ import annotations

import datetime

import msgspec
from Adyen import util

from paycell.psp.simkit import SimKit


def item(*, psp_reference: str, event_code: str, success: bool, merchant_account: str,
         merchant_reference: str, amount_minor: int, currency: str, now_s: float,
         original_reference: str | None = None, reason: str = "", extra: dict[str, str] | None = None,
         hmac_key: str) -> dict:
    """One signed NotificationRequestItem."""
    unsigned = {
        "amount": {"currency": currency, "value": amount_minor},
        "eventCode": event_code,
        "eventDate": datetime.datetime.fromtimestamp(now_s, datetime.UTC).isoformat(timespec="seconds"),
        "merchantAccountCode": merchant_account,
        "merchantReference": merchant_reference,
        "paymentMethod": "visa",
        "pspReference": psp_reference,
        "reason": reason,
        "success": "true" if success else "false",
    }
    if original_reference:
        unsigned["originalReference"] = original_reference
    signature = util.generate_notification_sig(unsigned, hmac_key).decode()
    return {**unsigned, "additionalData": {**(extra or {}), "hmacSignature": signature}}


def envelope(*items: dict) -> bytes:
    return msgspec.json.encode({"live": "false",
                                "notificationItems": [{"NotificationRequestItem": i} for i in items]})


def send(kit: SimKit, notification: dict) -> None:
    event_id = f"{notification['pspReference']}:{notification['eventCode']}:{notification['success']}"
    kit.outbox.send(event_id, notification["eventCode"], {"Content-Type": "application/json"},
                    envelope(notification))
