"""The PayPal connector: pay-ins through Orders v2 (create -> the buyer approves at PayPal ->
capture), pay-outs through Payouts v1, webhooks verified offline (webhooks.py).

Pay-in. `submit` creates an order (intent CAPTURE, paycell's order id as purchase_units[0]
reference_id, custom_id and invoice_id, and as the PayPal-Request-Id, so a repeat answers the same
order) and answers `requires_action` with the link the buyer approves at. `status` reads the order
(by its PayPal id, or, when paycell does not know it yet, by replaying the create under the same
PayPal-Request-Id, which PayPal answers with the same order: creating an order moves no money);
an APPROVED order is captured there, under a PayPal-Request-Id derived from paycell's order id, so
two workers capturing at once capture once. The capture's status is the outcome.

Pay-out. One batch of one item per order: sender_batch_id and sender_item_id are paycell's order
id (PayPal pays a sender_batch_id at most once in 30 days) and the PayPal-Request-Id too. The
batch is then read for its item's status. A replay PayPal refuses as a duplicate batch is
followed to the batch it links to; without a link the outcome stays unknown (never "none").

Refund (a reversal of a pay-in). `POST /v2/payments/captures/{capture id}/refund` with the
reversal id as PayPal-Request-Id and invoice_id (custom_id: `paycell-reversal:<id>`, so its
PAYMENT.CAPTURE.REFUNDED webhook is not read as a return). `reversal_status` reads the order, whose
purchase unit lists its refunds, and finds the reversal id among their invoice ids. A pay-out
cannot be recalled: PayPal cancels only an UNCLAIMED payout item, never a paid one.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import structlog
from yarl import URL

from paycell import money
from paycell.config.settings import Settings
from paycell.psp.base import (Charge, Direction, PspRejected, PspResult, PspTransientError, Reversal, ReversalResult,
                              ReversalUnsupported, WebhookEvent)
from paycell.psp.paypal import wire
from paycell.psp.paypal.client import Answer, PaypalClient, decode, rejected
from paycell.psp.paypal.webhooks import WebhookVerifier
from paycell.tls import client as tls_client

log = structlog.get_logger("paycell.psp.paypal")

# A PayPal account as a payee or payer: its email address, or its PayPal id (13 upper-case
# letters and digits, PayPal's "payer id"). PayPal issues both; paycell never sees more.
EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+")
PAYPAL_ID = re.compile(r"[A-Z0-9]{13}")
TOKEN_PATTERNS = {"paypal": re.compile(f"(?:{EMAIL.pattern})|(?:{PAYPAL_ID.pattern})")}

# PayPal's currencies (developer.paypal.com/api/rest/reference/currency-codes) that paycell knows,
# less HUF (paycell counts it in 1/100, PayPal accepts no decimals for it) and BRL/CNY (in-country
# accounts only).
CURRENCIES = frozenset({"AUD", "CAD", "CHF", "CZK", "DKK", "EUR", "GBP", "HKD", "JPY", "MXN", "NOK", "NZD",
                        "PLN", "SEK", "SGD", "USD"})
REQUEST_ID_CHARS_MAX = 108  # PayPal-Request-Id
_FULL = {"Prefer": "return=representation"}  # the whole order, captures included (default: minimal)

_CAPTURE_OUTCOMES = {
    "COMPLETED": "succeeded",
    # Money was captured; a later refund or reversal is an event of its own (webhook `returned`).
    "PARTIALLY_REFUNDED": "succeeded",
    "REFUNDED": "succeeded",
    "PENDING": "pending",
    "DECLINED": "declined",
    "FAILED": "declined",
}
# Capture answers (422 details[].issue) that are the buyer's funding being refused: a decline.
_CAPTURE_DECLINES = frozenset({"INSTRUMENT_DECLINED", "TRANSACTION_REFUSED", "PAYER_CANNOT_PAY",
                               "PAYEE_BLOCKED_TRANSACTION", "COMPLIANCE_VIOLATION", "MAX_NUMBER_OF_PAYMENT_ATTEMPTS_EXCEEDED"})
_REFUND_OUTCOMES = {"COMPLETED": "succeeded", "PENDING": "pending", "FAILED": "failed", "CANCELLED": "failed"}
_PAYOUT_SUCCESS = frozenset({"SUCCESS"})
# Final failures: the money did not reach the payee and came back to the sender.
_PAYOUT_FAILED = frozenset({"FAILED", "RETURNED", "BLOCKED", "REFUNDED", "REVERSED", "DENIED", "CANCELED"})
# Not final: PENDING/NEW are being processed; UNCLAIMED means the payee has no (confirmed) PayPal
# account yet: PayPal holds the money for 30 days, then RETURNS it; ONHOLD is under PayPal's
# review. The order waits (polled, then the inbox's webhook) rather than guess.
_PAYOUT_WAITING = frozenset({"PENDING", "NEW", "UNCLAIMED", "ONHOLD"})


def create(settings: Settings) -> PaypalPsp:
    return PaypalPsp(settings)


def missing(settings: Settings) -> str | None:
    needed = {"PAYCELL_PAYPAL_API_BASE_URL": settings.paypal_api_base_url,
              "PAYCELL_PAYPAL_CLIENT_ID": settings.paypal_client_id,
              "PAYCELL_PAYPAL_CLIENT_SECRET": settings.paypal_client_secret,
              "PAYCELL_PAYPAL_WEBHOOK_ID": settings.paypal_webhook_id,
              "PAYCELL_PAYPAL_CERT_HOSTS": settings.paypal_cert_hosts}
    absent = [name for name, value in needed.items() if not value]
    return ", ".join(absent) or None


def capture_request_id(order_id: str) -> str:
    return f"{order_id}-capture"


class PaypalPsp:
    """`Psp` for PayPal. One adapter belongs to one event loop (its HTTP session does)."""

    def __init__(self, settings: Settings, name: str = "paypal") -> None:
        self.name = name
        self.client = PaypalClient(settings.paypal_api_base_url, settings.paypal_client_id,
                                   settings.paypal_client_secret, settings.psp_timeout_s,
                                   tls=tls_client.for_connector(settings, "paypal"))
        self.webhooks = WebhookVerifier(settings.paypal_webhook_id, settings.paypal_cert_hosts,
                                        self.client.session, settings.psp_timeout_s)
        self.return_url = settings.psp_return_url

    # --- the protocol ---------------------------------------------------------------------------

    async def submit(self, charge: Charge) -> PspResult:
        self._check(charge)
        if charge.direction == "payin":
            return await self._order_result(charge, await self._create_order(charge))
        return await self._payout_result(await self._create_payout(charge))

    async def status(self, charge: Charge) -> PspResult | None:
        try:
            self._check(charge)
        except PspRejected:
            return None  # never sent: PayPal holds nothing under this key
        if charge.direction == "payin":
            order = await self._get_order(charge.psp_reference) if charge.psp_reference else None
            if order is None:
                try:
                    order = await self._create_order(charge)  # the same PayPal-Request-Id: the same order
                except PspRejected:
                    # PayPal refuses to make this order: an earlier create under the same request id
                    # would have been answered with its order instead. No order, no money.
                    return None
            return await self._order_result(charge, order)
        batch = await self._get_batch(charge.psp_reference) if charge.psp_reference else None
        if batch is None:
            batch = await self._create_payout(charge)
        return await self._payout_result(batch)

    async def reverse(self, reversal: Reversal) -> ReversalResult:
        order = await self._refundable_order(reversal)
        capture = order.capture()
        if capture is None:
            raise PspRejected(f"paypal: order {order.id} has no capture to refund")
        currency = reversal.currency
        body = wire.RefundRequest(
            amount=wire.Amount(currency_code=currency, value=money.format_amount(reversal.amount_minor, currency)),
            invoice_id=reversal.idempotency_key, custom_id=wire.REVERSAL_CUSTOM_ID_PREFIX + reversal.idempotency_key)
        answer = await self.client.call("POST", f"/v2/payments/captures/{_segment(capture.id)}/refund", body=body,
                                        request_id=reversal.idempotency_key, headers=_FULL)
        if answer.ok():
            refund = decode(answer, wire.Refund)
            log.info("paypal.refund", reversal_id=reversal.idempotency_key, refund=refund.id, status=refund.status)
            return _reversal_of(refund)
        raise rejected("refund", answer)

    async def reversal_status(self, reversal: Reversal) -> ReversalResult | None:
        order = await self._refundable_order(reversal)
        unit = order.purchase_units[0] if order.purchase_units else None
        refunds = unit.payments.refunds if unit and unit.payments else []
        found = [r for r in refunds if r.invoice_id == reversal.idempotency_key]
        return _reversal_of(found[0]) if found else None

    async def _refundable_order(self, reversal: Reversal) -> wire.Order:
        if reversal.charge.direction != "payin":
            raise ReversalUnsupported("paypal: a paid payout item cannot be recalled (PayPal cancels only "
                                      "unclaimed ones)")
        if not reversal.charge.psp_reference:
            raise PspRejected(f"paypal: no PayPal order id for order {reversal.charge.idempotency_key}")
        order = await self._get_order(reversal.charge.psp_reference)
        if order is None:
            raise PspRejected(f"paypal: no order {reversal.charge.psp_reference}")
        return order

    async def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
        return await self.webhooks.verify(headers, body)

    def webhook_response(self) -> tuple[int, str, bytes]:
        return 200, "application/json", b"{}"  # PayPal retries anything but 2xx

    def supports(self, direction: Direction, payment_option: str, currency: str) -> bool:
        return payment_option == "paypal" and currency in CURRENCIES and direction in ("payin", "payout")

    async def close(self) -> None:
        await self.client.close()

    # --- pay-in: Orders v2 ----------------------------------------------------------------------

    def _check(self, charge: Charge) -> None:
        if charge.currency not in CURRENCIES:
            raise PspRejected(f"paypal: currency {charge.currency} is not carried")
        if not TOKEN_PATTERNS["paypal"].fullmatch(charge.instrument) and charge.direction == "payout":
            raise PspRejected("paypal: the payee is neither a PayPal email address nor a PayPal id")
        if not 0 < len(capture_request_id(charge.idempotency_key)) <= REQUEST_ID_CHARS_MAX:
            raise PspRejected("paypal: the order id is too long for a PayPal-Request-Id")

    def _order_request(self, charge: Charge) -> wire.OrderRequest:
        order_id = charge.idempotency_key
        return_url = URL(charge.return_url or self.return_url)
        amount = wire.Amount(currency_code=charge.currency,
                             value=money.format_amount(charge.amount_minor, charge.currency))
        email = charge.instrument if EMAIL.fullmatch(charge.instrument) else None
        return wire.OrderRequest(
            intent="CAPTURE",
            purchase_units=[wire.PurchaseUnit(amount=amount, reference_id=order_id, custom_id=order_id,
                                              invoice_id=order_id)],
            payment_source=wire.PaymentSource(paypal=wire.PaypalSource(
                email_address=email,
                experience_context=wire.ExperienceContext(
                    return_url=str(return_url.update_query(order_id=order_id)),
                    cancel_url=str(return_url.update_query(order_id=order_id, cancelled="true")),
                    user_action="PAY_NOW", shipping_preference="NO_SHIPPING"))),
        )

    async def _create_order(self, charge: Charge) -> wire.Order:
        answer = await self.client.call("POST", "/v2/checkout/orders", body=self._order_request(charge),
                                        request_id=charge.idempotency_key, headers=_FULL)
        if answer.ok():
            order = decode(answer, wire.Order)
            log.info("paypal.order", order_id=charge.idempotency_key, paypal_order=order.id, status=order.status)
            return order
        raise rejected("create order", answer)

    async def _get_order(self, paypal_order_id: str) -> wire.Order | None:
        answer = await self.client.call("GET", f"/v2/checkout/orders/{_segment(paypal_order_id)}")
        if answer.ok():
            return decode(answer, wire.Order)
        if answer.status == 404:
            return None  # not under that id: the create's replay finds it (or makes it)
        raise rejected("get order", answer)

    async def _order_result(self, charge: Charge, order: wire.Order) -> PspResult:
        if order.status == "APPROVED":
            captured = await self._capture(charge, order)
            if isinstance(captured, PspResult):
                return captured
            order = captured
        if order.status in ("CREATED", "PAYER_ACTION_REQUIRED", "SAVED", "APPROVED"):
            url = order.link("payer-action", "approve")
            if url is None:
                raise PspTransientError(f"paypal: order {order.id} ({order.status}) has no approval link")
            return PspResult(status="requires_action", psp_reference=order.id, action_url=url)
        if order.status == "VOIDED":
            return PspResult(status="declined", psp_reference=order.id, decline_code="order_voided")
        capture = order.capture()
        if order.status == "COMPLETED" and capture is None:  # a minimal answer: read the whole order
            order = await self._get_order(order.id) or order
            capture = order.capture()
        if order.status != "COMPLETED" or capture is None:
            raise PspTransientError(f"paypal: order {order.id} in status {order.status} without a capture")
        outcome = _CAPTURE_OUTCOMES.get(capture.status)
        if outcome is None:
            raise PspTransientError(f"paypal: capture {capture.id} in unknown status {capture.status}")
        code = None
        if outcome == "declined":
            reason = capture.status_details.reason if capture.status_details else None
            code = f"capture_{(reason or capture.status).lower()}"
        return PspResult(status=outcome, psp_reference=order.id, decline_code=code)

    async def _capture(self, charge: Charge, order: wire.Order) -> wire.Order | PspResult:
        answer = await self.client.call("POST", f"/v2/checkout/orders/{_segment(order.id)}/capture",
                                        request_id=capture_request_id(charge.idempotency_key),
                                        headers=_FULL)
        if answer.ok():
            captured = decode(answer, wire.Order)
            log.info("paypal.captured", order_id=charge.idempotency_key, paypal_order=order.id,
                     status=captured.status)
            return captured
        issues = set(answer.error().issues())
        if answer.status == 422 and issues & {"ORDER_ALREADY_CAPTURED", "ORDER_NOT_APPROVED", "ORDER_COMPLETED"}:
            # Captured by someone else meanwhile, or not approved after all: the order says which.
            fresh = await self._get_order(order.id)
            if fresh is None or fresh.status == "APPROVED":
                raise PspTransientError(f"paypal: capture of {order.id} answered {sorted(issues)}; order unclear")
            return fresh
        if answer.status == 422 and issues & _CAPTURE_DECLINES:
            code = sorted(issues & _CAPTURE_DECLINES)[0].lower()
            log.info("paypal.capture_declined", order_id=charge.idempotency_key, paypal_order=order.id, code=code)
            return PspResult(status="declined", psp_reference=order.id, decline_code=code)
        raise rejected("capture", answer)

    # --- pay-out: Payouts v1 --------------------------------------------------------------------

    def _payout_request(self, charge: Charge) -> wire.PayoutRequest:
        recipient_type = "EMAIL" if EMAIL.fullmatch(charge.instrument) else "PAYPAL_ID"
        return wire.PayoutRequest(
            sender_batch_header=wire.SenderBatchHeader(sender_batch_id=charge.idempotency_key,
                                                       email_subject="You have a payment",
                                                       recipient_type=recipient_type),
            items=[wire.PayoutItem(
                amount=wire.PayoutAmount(currency=charge.currency,
                                         value=money.format_amount(charge.amount_minor, charge.currency)),
                receiver=charge.instrument, recipient_type=recipient_type,
                sender_item_id=charge.idempotency_key)],
        )

    async def _create_payout(self, charge: Charge) -> wire.PayoutBatch:
        answer = await self.client.call("POST", "/v1/payments/payouts", body=self._payout_request(charge),
                                        request_id=charge.idempotency_key)
        if answer.ok():
            batch = decode(answer, wire.PayoutBatch)
            log.info("paypal.payout", order_id=charge.idempotency_key,
                     payout_batch=batch.batch_header.payout_batch_id, status=batch.batch_header.batch_status)
            return batch
        existing = _duplicate_batch_id(answer)
        if existing is not None:
            batch = await self._get_batch(existing)
            if batch is not None:
                return batch
        if existing is not None or _is_duplicate_batch(answer):
            # The batch exists (PayPal refused paying it twice) but cannot be read: unknown.
            raise PspTransientError(f"paypal: payout batch {charge.idempotency_key} exists but cannot be read")
        raise rejected("create payout", answer)

    async def _get_batch(self, payout_batch_id: str) -> wire.PayoutBatch | None:
        answer = await self.client.call("GET", f"/v1/payments/payouts/{_segment(payout_batch_id)}")
        if answer.ok():
            return decode(answer, wire.PayoutBatch)
        if answer.status == 404:
            return None
        raise rejected("get payout batch", answer)

    async def _payout_result(self, batch: wire.PayoutBatch) -> PspResult:
        header = batch.batch_header
        if header.batch_status in ("DENIED", "CANCELED"):
            return PspResult(status="declined", psp_reference=header.payout_batch_id,
                             decline_code=f"payout_batch_{header.batch_status.lower()}")
        if not batch.items:  # the create's answer carries the header only: read the batch
            read = await self._get_batch(header.payout_batch_id)
            if read is None:
                raise PspTransientError(f"paypal: payout batch {header.payout_batch_id} cannot be read")
            batch = read
        if not batch.items:
            return PspResult(status="pending", psp_reference=header.payout_batch_id)
        item = batch.items[0]
        status = item.transaction_status
        if status in _PAYOUT_SUCCESS:
            return PspResult(status="succeeded", psp_reference=header.payout_batch_id)
        if status in _PAYOUT_FAILED:
            name = item.errors.name if item.errors and item.errors.name else f"payout_{status}"
            return PspResult(status="declined", psp_reference=header.payout_batch_id, decline_code=name.lower())
        if status in _PAYOUT_WAITING:
            return PspResult(status="pending", psp_reference=header.payout_batch_id)
        raise PspTransientError(f"paypal: payout item {item.payout_item_id} in unknown status {status}")


def _reversal_of(refund: wire.Refund) -> ReversalResult:
    outcome = _REFUND_OUTCOMES.get(refund.status)
    if outcome is None:
        raise PspTransientError(f"paypal: refund {refund.id} in unknown status {refund.status}")
    reason = refund.status_details.reason if refund.status_details else None
    return ReversalResult(status=outcome, psp_reference=refund.id,
                          failure_code=f"refund_{(reason or refund.status).lower()}" if outcome == "failed" else None)


def _segment(paypal_id: str) -> str:
    """A PayPal id as one path segment: ids are upper-case letters and digits; anything else is
    refused rather than let into a path."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", paypal_id):
        raise PspRejected(f"paypal: {paypal_id[:70]!r} is not a PayPal id")
    return paypal_id


def _is_duplicate_batch(answer: Answer) -> bool:
    """PayPal's refusal of a sender_batch_id it has already paid (400 USER_BUSINESS_ERROR,
    details[].field SENDER_BATCH_ID, "Duplicate batch request" / "... already exists")."""
    if answer.status != 400:
        return False
    err = answer.error()
    return err.name == "USER_BUSINESS_ERROR" and any(
        (d.field or "").upper() == "SENDER_BATCH_ID" or "duplicate" in d.issue.lower() for d in err.details)


def _duplicate_batch_id(answer: Answer) -> str | None:
    """The payout_batch_id a duplicate-batch refusal links to, if it does."""
    if not _is_duplicate_batch(answer):
        return None
    err = answer.error()
    for detail in err.details:
        for link in [*detail.links, *err.links]:
            if "/v1/payments/payouts/" in link.href:
                return link.href.rstrip("/").rsplit("/", 1)[-1]
    return None
