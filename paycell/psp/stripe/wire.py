"""Stripe's objects as paycell reads them (only the fields it uses), and what each PaymentIntent
status means to paycell. Everything Stripe-specific about an outcome is decided here, once, for
the API answers (connector.py) and the webhook events (webhooks.py) alike.

PaymentIntent status -> paycell outcome:
    succeeded                  succeeded
    processing                 pending (ACH: up to 4 business days; a webhook or a poll follows)
    requires_capture           pending (paycell creates automatic-capture intents: Stripe captures)
    requires_confirmation      pending (not expected with confirm=true; the poll deadline catches it)
    requires_action            requires_action; `next_action.redirect_to_url.url` is where the
                               customer authenticates (3-D Secure)
    requires_payment_method    declined, after a failed attempt: `last_payment_error` says why
    canceled                   declined, with `cancellation_reason`
"""
from __future__ import annotations

import msgspec

from paycell.psp.base import PspResult, PspTransientError, ReversalResult

# paycell's order id rides in the PaymentIntent's metadata under this key: the search key for
# `status` and how webhooks name the order.
ORDER_ID_KEY = "paycell_order_id"
USER_ID_KEY = "paycell_user_id"
# A refund carries paycell's reversal id here: how `reversal_status` finds it among the intent's refunds.
REVERSAL_ID_KEY = "paycell_reversal_id"

# Refund status -> paycell's reversal outcome (requires_action: a refund Stripe needs the customer's
# bank details for; it is pending until they give them, or fails).
REFUND_OUTCOMES = {"succeeded": "succeeded", "pending": "pending", "requires_action": "pending",
                   "failed": "failed", "canceled": "failed"}

# Stripe names an ACH failure or return by its own code or dispute reason, not by NACHA's return
# code; the NACHA code each one stands for.
ACH_RETURN_CODES = {"insufficient_funds": "R01", "account_closed": "R02", "no_account": "R03",
                    "invalid_account_number": "R04", "incorrect_account_details": "R04",
                    "debit_not_authorized": "R10", "bank_account_restricted": "R16"}


class RedirectToUrl(msgspec.Struct):
    url: str | None = None
    return_url: str | None = None


class NextAction(msgspec.Struct):
    type: str
    redirect_to_url: RedirectToUrl | None = None


class PaymentError(msgspec.Struct):
    """Stripe's error object: the `error` of an error answer and a PaymentIntent's `last_payment_error`."""

    type: str | None = None
    code: str | None = None
    decline_code: str | None = None
    message: str | None = None
    param: str | None = None


class PaymentIntent(msgspec.Struct):
    id: str
    status: str
    amount: int = 0
    currency: str = ""
    metadata: dict[str, str] = {}
    next_action: NextAction | None = None
    last_payment_error: PaymentError | None = None
    cancellation_reason: str | None = None
    payment_method_types: list[str] = []
    created: int | None = None


class SearchResult(msgspec.Struct):
    data: list[PaymentIntent]
    has_more: bool = False


_PENDING = frozenset({"processing", "requires_capture", "requires_confirmation"})


def decline_code(error: PaymentError | None, fallback: str) -> str:
    """Stripe's most specific reason: `decline_code` (the issuer's, e.g. insufficient_funds) when
    there is one, else `code` (expired_card, incorrect_cvc, an ACH failure such as account_closed)."""
    if error is None:
        return fallback
    return error.decline_code or error.code or fallback


def result_of(intent: PaymentIntent) -> PspResult:
    """The outcome a PaymentIntent stands for (see the module docstring)."""
    status = intent.status
    if status == "succeeded":
        return PspResult(status="succeeded", psp_reference=intent.id)
    if status in _PENDING:
        return PspResult(status="pending", psp_reference=intent.id)
    if status == "requires_action":
        redirect = intent.next_action.redirect_to_url if intent.next_action else None
        return PspResult(status="requires_action", psp_reference=intent.id,
                         action_url=redirect.url if redirect else None)
    if status == "requires_payment_method":
        # With confirm=true the intent is attempted at once, so this status means the attempt
        # (or the customer's authentication) failed.
        return PspResult(status="declined", psp_reference=intent.id,
                         decline_code=decline_code(intent.last_payment_error, "payment_failed"))
    if status == "canceled":
        reason = intent.cancellation_reason
        return PspResult(status="declined", psp_reference=intent.id,
                         decline_code=f"canceled_{reason}" if reason else "canceled")
    # A status this code does not know: Stripe answered, but paycell cannot tell what happened.
    raise PspTransientError(f"stripe: PaymentIntent {intent.id} has an unknown status {status!r}")


def decode_intent(payload: bytes | str | dict) -> PaymentIntent:
    """A PaymentIntent from Stripe's JSON (raw or already parsed); unreadable -> PspTransientError
    (Stripe answered, so a charge may exist: the outcome is unknown, never declined)."""
    try:
        if isinstance(payload, dict):
            return msgspec.convert(payload, PaymentIntent)
        return msgspec.json.decode(payload, type=PaymentIntent)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise PspTransientError(f"stripe: unreadable PaymentIntent: {exc}") from exc


class Refund(msgspec.Struct):
    id: str
    status: str
    amount: int = 0
    metadata: dict[str, str] = {}
    failure_reason: str | None = None


class RefundList(msgspec.Struct):
    data: list[Refund]
    has_more: bool = False


def reversal_of(refund: Refund) -> ReversalResult:
    status = REFUND_OUTCOMES.get(refund.status)
    if status is None:
        raise PspTransientError(f"stripe: refund {refund.id} in an unknown status {refund.status!r}")
    return ReversalResult(status=status, psp_reference=refund.id,
                          failure_code=(refund.failure_reason or refund.status) if status == "failed" else None)
