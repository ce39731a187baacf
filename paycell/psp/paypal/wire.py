"""PayPal's wire format, as msgspec Structs: the few fields of the REST API paycell reads or sends.

Only this package sees these names (Orders v2, Payouts v1, OAuth2, the error body and the webhook
envelope). Fields paycell does not read are left out; msgspec ignores them when decoding, so a
field PayPal adds later never breaks a decode. Amounts are PayPal's decimal strings ("12.30"),
converted with `paycell.money` at the edge, never floats.
"""
from __future__ import annotations

import msgspec


class Link(msgspec.Struct, omit_defaults=True):
    href: str
    rel: str
    method: str = "GET"


class TokenResponse(msgspec.Struct):
    access_token: str
    expires_in: int  # seconds
    token_type: str = "Bearer"


class ErrorDetail(msgspec.Struct, omit_defaults=True):
    issue: str = ""
    field: str | None = None
    description: str | None = None
    links: list[Link] = []


class Error(msgspec.Struct, omit_defaults=True):
    """PayPal's error body: `name` (RESOURCE_NOT_FOUND, UNPROCESSABLE_ENTITY ...), `details[].issue`
    (ORDER_NOT_APPROVED, INSTRUMENT_DECLINED ...). OAuth's token endpoint answers `error` instead."""

    name: str = ""
    message: str = ""
    debug_id: str | None = None
    details: list[ErrorDetail] = []
    links: list[Link] = []
    error: str | None = None  # the OAuth2 endpoint's error code (invalid_client ...)
    error_description: str | None = None

    def issues(self) -> list[str]:
        return [d.issue for d in self.details if d.issue]

    def label(self) -> str:
        return self.name or self.error or "UNKNOWN_ERROR"


# --- Orders v2 ---------------------------------------------------------------------------------

class Amount(msgspec.Struct):
    """Orders v2 money: {"currency_code": "USD", "value": "12.30"}."""

    currency_code: str
    value: str


class StatusDetails(msgspec.Struct, omit_defaults=True):
    reason: str | None = None


class RelatedIds(msgspec.Struct, omit_defaults=True):
    order_id: str | None = None
    capture_id: str | None = None


class SupplementaryData(msgspec.Struct, omit_defaults=True):
    related_ids: RelatedIds | None = None


class Capture(msgspec.Struct, omit_defaults=True):
    """A captured payment. status: COMPLETED, DECLINED, PARTIALLY_REFUNDED, PENDING, REFUNDED, FAILED."""

    id: str
    status: str
    amount: Amount | None = None
    status_details: StatusDetails | None = None
    custom_id: str | None = None
    invoice_id: str | None = None
    final_capture: bool = True
    supplementary_data: SupplementaryData | None = None
    create_time: str | None = None
    update_time: str | None = None
    links: list[Link] = []


class Payments(msgspec.Struct, omit_defaults=True):
    captures: list[Capture] = []
    refunds: list["Refund"] = []


# A refund paycell makes carries this prefix and its reversal id as custom_id (and the reversal id as
# invoice_id): the webhook of a refund paycell asked for is not a return (webhooks.py).
REVERSAL_CUSTOM_ID_PREFIX = "paycell-reversal:"


class RefundRequest(msgspec.Struct, omit_defaults=True):
    """POST /v2/payments/captures/{id}/refund: (part of) a capture back to the buyer."""

    amount: Amount | None = None  # absent: what is left of the capture
    invoice_id: str | None = None
    custom_id: str | None = None
    note_to_payer: str | None = None


class PurchaseUnit(msgspec.Struct, omit_defaults=True):
    amount: Amount
    reference_id: str | None = None
    custom_id: str | None = None
    invoice_id: str | None = None
    description: str | None = None
    payments: Payments | None = None


class ExperienceContext(msgspec.Struct, omit_defaults=True):
    return_url: str | None = None
    cancel_url: str | None = None
    user_action: str | None = None  # PAY_NOW: the buyer pays on PayPal's page, no review step
    shipping_preference: str | None = None  # NO_SHIPPING
    brand_name: str | None = None


class PaypalSource(msgspec.Struct, omit_defaults=True):
    email_address: str | None = None  # pre-fills the buyer's login on the approval page
    account_id: str | None = None  # the buyer's PayPal id (answers only)
    experience_context: ExperienceContext | None = None


class PaymentSource(msgspec.Struct, omit_defaults=True):
    paypal: PaypalSource | None = None


class ApplicationContext(msgspec.Struct, omit_defaults=True):
    """The older place of return/cancel URLs (deprecated by PayPal for payment_source.paypal.
    experience_context, still answered with status CREATED and an `approve` link)."""

    return_url: str | None = None
    cancel_url: str | None = None
    user_action: str | None = None
    shipping_preference: str | None = None


class OrderRequest(msgspec.Struct, omit_defaults=True):
    intent: str
    purchase_units: list[PurchaseUnit]
    payment_source: PaymentSource | None = None
    application_context: ApplicationContext | None = None


class Payer(msgspec.Struct, omit_defaults=True):
    email_address: str | None = None
    payer_id: str | None = None


class Order(msgspec.Struct, omit_defaults=True):
    """status: CREATED, SAVED, APPROVED, VOIDED, COMPLETED, PAYER_ACTION_REQUIRED."""

    id: str
    status: str
    intent: str = "CAPTURE"
    purchase_units: list[PurchaseUnit] = []
    payment_source: PaymentSource | None = None
    payer: Payer | None = None
    create_time: str | None = None
    update_time: str | None = None
    links: list[Link] = []

    def link(self, *rels: str) -> str | None:
        for rel in rels:
            for link in self.links:
                if link.rel == rel:
                    return link.href
        return None

    def capture(self) -> Capture | None:
        for unit in self.purchase_units:
            if unit.payments is not None and unit.payments.captures:
                return unit.payments.captures[-1]
        return None


# --- Payouts v1 --------------------------------------------------------------------------------

class PayoutAmount(msgspec.Struct):
    """Payouts v1 money: {"currency": "USD", "value": "12.30"} (not Orders' currency_code)."""

    currency: str
    value: str


class SenderBatchHeader(msgspec.Struct, omit_defaults=True):
    sender_batch_id: str | None = None
    email_subject: str | None = None
    email_message: str | None = None
    recipient_type: str | None = None


class PayoutItem(msgspec.Struct, omit_defaults=True):
    amount: PayoutAmount
    receiver: str
    recipient_type: str | None = None  # EMAIL, PHONE, PAYPAL_ID
    sender_item_id: str | None = None
    note: str | None = None
    recipient_wallet: str | None = None


class PayoutRequest(msgspec.Struct, omit_defaults=True):
    sender_batch_header: SenderBatchHeader
    items: list[PayoutItem]


class ItemError(msgspec.Struct, omit_defaults=True):
    name: str = ""
    message: str = ""


class PayoutItemDetails(msgspec.Struct, omit_defaults=True):
    """transaction_status: SUCCESS, FAILED, PENDING, UNCLAIMED, RETURNED, ONHOLD, BLOCKED,
    REFUNDED, REVERSED, DENIED, CANCELED, NEW."""

    payout_item_id: str
    transaction_status: str
    payout_batch_id: str
    payout_item: PayoutItem
    transaction_id: str | None = None
    sender_batch_id: str | None = None
    payout_item_fee: PayoutAmount | None = None
    time_processed: str | None = None
    errors: ItemError | None = None
    links: list[Link] = []


class PayoutBatchHeader(msgspec.Struct, omit_defaults=True):
    """batch_status: DENIED, PENDING, PROCESSING, SUCCESS, CANCELED."""

    payout_batch_id: str
    batch_status: str
    sender_batch_header: SenderBatchHeader
    time_created: str | None = None
    time_completed: str | None = None
    amount: PayoutAmount | None = None
    fees: PayoutAmount | None = None


class PayoutBatch(msgspec.Struct, omit_defaults=True):
    batch_header: PayoutBatchHeader
    items: list[PayoutItemDetails] = []
    links: list[Link] = []


# --- Webhooks ----------------------------------------------------------------------------------

class WebhookEnvelope(msgspec.Struct, omit_defaults=True):
    """A webhook delivery's body; `resource` is read per `event_type` (an order, a capture, a
    refund or a payout item)."""

    id: str
    event_type: str
    resource: msgspec.Raw
    create_time: str | None = None
    resource_type: str | None = None
    event_version: str | None = None
    resource_version: str | None = None
    summary: str | None = None


class Refund(msgspec.Struct, omit_defaults=True):
    """The resource of PAYMENT.CAPTURE.REFUNDED / REVERSED: money taken back from a capture; its
    `up` link names the capture."""

    id: str
    status: str = ""
    amount: Amount | None = None
    custom_id: str | None = None
    invoice_id: str | None = None
    note_to_payer: str | None = None
    status_details: StatusDetails | None = None
    links: list[Link] = []
