"""Adyen's wire format for the few calls paycell makes, as msgspec Structs, and what each answer
means in paycell's words.

Checkout API v71 (`POST /payments`, `POST /payments/details`) and the Payout API v68
(`POST /submitThirdParty`). Amounts are integers of minor units, as Adyen sends them. Field names
are Adyen's (camelCase); nothing outside `paycell.psp.adyen` sees them.
"""
from __future__ import annotations

import re
from typing import Literal

import msgspec

from paycell.psp.base import Outcome


class Amount(msgspec.Struct, frozen=True):
    currency: str
    value: int


class PaymentMethod(msgspec.Struct, frozen=True, omit_defaults=True):
    type: str  # scheme, applepay, googlepay
    storedPaymentMethodId: str | None = None
    holderName: str | None = None  # Adyen's test environment reads magic holder names


class PaymentRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    merchantAccount: str
    reference: str
    amount: Amount
    paymentMethod: PaymentMethod
    returnUrl: str
    shopperReference: str | None = None
    shopperInteraction: Literal["Ecommerce", "ContAuth"] | None = None
    recurringProcessingModel: Literal["CardOnFile", "UnscheduledCardOnFile", "Subscription"] | None = None


class DetailsRequest(msgspec.Struct, frozen=True):
    details: dict[str, str]  # {"redirectResult": ...} as the shopper's return brought it


class Action(msgspec.Struct, frozen=True):
    type: str = ""  # redirect, threeDS2, qrCode, voucher, await ...
    url: str | None = None
    method: str | None = None
    downloadUrl: str | None = None
    paymentMethodType: str | None = None


class PaymentResponse(msgspec.Struct, frozen=True):
    resultCode: str
    pspReference: str | None = None
    merchantReference: str | None = None
    refusalReason: str | None = None
    refusalReasonCode: str | None = None
    action: Action | None = None
    amount: Amount | None = None


class Recurring(msgspec.Struct, frozen=True):
    contract: Literal["PAYOUT"] = "PAYOUT"


class SubmitRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    """`/submitThirdParty`: a pay-out to payout details stored under the shopper (recurring contract
    PAYOUT). Adyen's schema also lists `shopperEmail`; paycell holds no e-mail address (see
    connector.py)."""

    merchantAccount: str
    reference: str
    amount: Amount
    recurring: Recurring
    selectedRecurringDetailReference: str
    shopperReference: str
    shopperEmail: str | None = None


class SubmitResponse(msgspec.Struct, frozen=True):
    pspReference: str
    resultCode: str
    refusalReason: str | None = None


class ServiceError(msgspec.Struct, frozen=True):
    status: int = 0
    errorCode: str = ""
    message: str = ""
    errorType: str = ""
    pspReference: str | None = None


# Every resultCode of Checkout's /payments and /payments/details, and what paycell makes of it.
#   Authorised            the payment is authorised (captured automatically, per the account's
#                         capture delay): paid.
#   Refused, Cancelled    final, no money moved.
#   Error                 final at Adyen: a technical failure on Adyen's or the acquirer's side
#                         while processing. Replaying the key returns the same Error, so retrying
#                         cannot help; no money moved. paycell fails the order ("error:..." code) so
#                         the customer may pay again with a new order. It is NOT a PspTransientError:
#                         that would retry under the same key for nothing and end in needs_attention.
#   Pending, Received     the outcome arrives by notification (AUTHORISATION).
#   RedirectShopper, IdentifyShopper, ChallengeShopper, PresentToShopper
#                         the shopper must act (3-D Secure, a voucher or QR code); the
#                         AUTHORISATION notification (or /payments/details) brings the outcome.
#   PartiallyAuthorised   only part of the amount is authorised. paycell never asks for partial
#                         authorisation (it sends no allowPartialAuth), so this should not happen.
#                         If it does, it is neither a success (paycell would credit money it does
#                         not get) nor a decline (part of the customer's money is held and, with
#                         automatic capture, may be captured): the order waits as pending, is
#                         logged loudly, and reaches needs_attention at its polling deadline for a
#                         human to cancel or complete it at Adyen.
RESULT_OUTCOMES: dict[str, Outcome] = {
    "Authorised": "succeeded",
    "Refused": "declined",
    "Cancelled": "declined",
    "Error": "declined",
    "Pending": "pending",
    "Received": "pending",
    "RedirectShopper": "requires_action",
    "IdentifyShopper": "requires_action",
    "ChallengeShopper": "requires_action",
    "PresentToShopper": "requires_action",
    "PartiallyAuthorised": "pending",
}

# /submitThirdParty answers "[payout-submit-received]" (Adyen's documentation also writes it without
# the brackets): the payout is submitted for review; PAYOUT_THIRDPARTY, PAYOUT_DECLINE or
# PAYOUT_EXPIRE bring the outcome. "Refused" (with refusalReason) is a pay-out refused at once.
PAYOUT_RECEIVED = frozenset({"[payout-submit-received]", "payout-submit-received"})

DECLINE_CODE_CHARS_MAX = 120


def decline_code(result_code: str, reason_code: str | None, reason: str | None) -> str:
    """`refused:12:Not enough balance`: Adyen's resultCode, then its stable refusalReasonCode, then
    the refusalReason text (both when given)."""
    parts = [result_code.lower()] + [p for p in (reason_code, reason) if p]
    return ":".join(parts)[:DECLINE_CODE_CHARS_MAX]


# The merchant reference of a refund paycell asks for: its reversal id, so that Adyen's REFUND
# notification names the reversal (webhooks.py) and is never read as a return.
REVERSAL_REFERENCE = re.compile(r"rev-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")


class RefundRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    """POST /checkout/v71/payments/{paymentPspReference}/refunds."""

    merchantAccount: str
    amount: Amount
    reference: str


class RefundResponse(msgspec.Struct, frozen=True):
    """Adyen accepted the refund (`status` "received"); the REFUND notification says how it ended."""

    pspReference: str
    status: str
    paymentPspReference: str | None = None
    reference: str | None = None
