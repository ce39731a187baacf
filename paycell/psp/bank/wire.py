"""Modern Treasury's Payment Orders API on the wire, and what its words mean to paycell.

Field names, status words, the error envelope and the webhook envelope are the provider's
(docs.moderntreasury.com: Payment Orders, Returns, Webhooks; the official SDK's types). Amounts are
integers of the currency's smallest unit, as paycell keeps them. Only the fields paycell reads or
sends are declared; the provider sends many more, which decoding ignores.
"""
from __future__ import annotations

import datetime
from typing import Literal

import msgspec

from paycell.psp.base import Outcome, PspResult

# The metadata key carrying paycell's payment order id: how a payment order is found again after
# a lost response (GET /api/payment_orders?metadata[paycell_order_id]=...), and how a webhook names
# the order it is about.
ORDER_ID_KEY = "paycell_order_id"
USER_ID_KEY = "paycell_user_id"
# A refund of an ACH debit is a new ACH credit to the same account; its payment order carries
# paycell's reversal id here (and the refunded order's id under REFUND_OF_KEY), never ORDER_ID_KEY.
REVERSAL_ID_KEY = "paycell_reversal_id"
REFUND_OF_KEY = "paycell_refund_of"

Direction = Literal["credit", "debit"]
# paycell's direction -> the payment order's: a pay-in pulls from the user's account (debit), a
# pay-out pushes to it (credit).
DIRECTIONS: dict[str, Direction] = {"payin": "debit", "payout": "credit"}

# Every status a payment order can hold, and paycell's outcome for it.
STATUS_OUTCOMES: dict[str, Outcome] = {
    "needs_approval": "pending",  # an approver at the organization must act first
    "approved": "pending",
    "pending": "pending",
    "processing": "pending",
    "sent": "pending",
    "completed": "succeeded",  # reconciled with the posted bank transaction
    "denied": "declined",
    "cancelled": "declined",
    "failed": "declined",
    "returned": "declined",  # the receiving bank sent it back (an ACH return, R-code in current_return)
    "reversed": "declined",  # the originator reversed it
}

# ACH return reason codes (NACHA) -> paycell's decline code, in the words Stripe uses for the same
# ACH failures so that every connector's declines read alike. Codes not listed become
# "ach_return_<code>".
RETURN_DECLINE_CODES: dict[str, str] = {
    "R01": "insufficient_funds",
    "R02": "account_closed",
    "R03": "no_account",
    "R04": "invalid_account_number",
    "R07": "debit_not_authorized",  # authorisation revoked by the customer
    "R08": "payment_stopped",
    "R10": "debit_not_authorized",  # customer advises not authorised
    "R16": "account_frozen",
    "R20": "bank_account_restricted",  # non-transaction account
    "R29": "debit_not_authorized",  # corporate customer advises not authorised
}


class ReturnObject(msgspec.Struct, kw_only=True):
    id: str
    code: str | None = None  # "R01" ... for ACH returns
    reason: str | None = None
    amount: int = 0
    currency: str = "USD"
    created_at: str = ""


class PaymentOrder(msgspec.Struct, kw_only=True):
    id: str
    object: str = "payment_order"
    type: str
    direction: Direction
    amount: int
    currency: str
    status: str
    originating_account_id: str = ""
    receiving_account_id: str = ""
    counterparty_id: str | None = None
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    current_return: ReturnObject | None = None
    transaction_ids: list[str] = msgspec.field(default_factory=list)
    vendor_failure_reason: str | None = None
    effective_date: str = ""
    created_at: str = ""
    updated_at: str = ""
    live_mode: bool = False


class PaymentOrderCreate(msgspec.Struct, kw_only=True, omit_defaults=True):
    """POST /api/payment_orders: what paycell sends (the same for every retry of one order, so the
    provider's idempotency check sees one request)."""

    type: str
    direction: Direction
    amount: int
    currency: str
    originating_account_id: str
    receiving_account_id: str
    metadata: dict[str, str]
    description: str | None = None


class ErrorDetail(msgspec.Struct, kw_only=True):
    code: str = "unknown"
    message: str = ""
    parameter: str | None = None


class ErrorBody(msgspec.Struct, kw_only=True):
    errors: ErrorDetail = msgspec.field(default_factory=ErrorDetail)


class WebhookBody(msgspec.Struct, kw_only=True):
    """A payment order webhook: the event's name and the payment order as it is now."""

    event: str
    data: PaymentOrder


def decline_code(order: PaymentOrder) -> str:
    """paycell's decline code for a payment order that ended without moving money."""
    if order.status == "returned":
        code = order.current_return.code if order.current_return else None
        if code is None:
            return "ach_return"
        return RETURN_DECLINE_CODES.get(code, f"ach_return_{code.lower()}")
    if order.status == "failed":
        return "payment_failed"
    return order.status  # cancelled, denied, reversed


def result(order: PaymentOrder) -> PspResult:
    """The payment order's status as paycell's outcome. An unknown status raises KeyError: the
    caller treats the answer as unreadable (outcome unknown), never as a decline."""
    outcome = STATUS_OUTCOMES[order.status]
    code = decline_code(order) if outcome == "declined" else None
    return PspResult(status=outcome, psp_reference=order.id, decline_code=code)


def timestamp(dt: datetime.datetime) -> str:
    """ISO 8601 in UTC with a "Z", as the provider writes created_at / updated_at."""
    return dt.astimezone(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_timestamp_s(text: str) -> float | None:
    """Seconds since the epoch of an ISO 8601 timestamp, or None when there is none to read."""
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# A refund's payment order status -> paycell's reversal outcome: the credit is on its way until the
# rail settles it; a credit the receiving bank returns or the rail fails gave nothing back.
REFUND_OUTCOMES = {"approved": "pending", "processing": "pending", "sent": "pending", "completed": "succeeded",
                   "failed": "failed", "returned": "failed", "cancelled": "failed", "denied": "failed",
                   "reversed": "failed"}
