"""What the PayPal simulator holds: access tokens, orders, payout batches, the PayPal-Request-Ids
it has answered, the balance movements its settlement report lists, and how the magic buyer and
payee addresses decide outcomes (as the sandbox's test accounts and negative testing do).

Buyer (the order's payment_source.paypal.email_address, or `buyer=` on the approval page); the
local part before any "+" decides:
    capture-declined@...     the capture answers 201 with capture status DECLINED
    instrument-declined@...  the capture answers 422 INSTRUMENT_DECLINED (the order stays APPROVED)
    capture-pending@...      capture PENDING (PENDING_REVIEW); COMPLETED once the clock has moved
                             `SETTLE_AFTER_S` (a day) past the capture (PAYMENT.CAPTURE.COMPLETED)
    capture-reversed@...     COMPLETED, then REVERSED `REVERSE_AFTER_S` (a week) later
                             (PAYMENT.CAPTURE.REVERSED: a chargeback PayPal decided)
    anything else            COMPLETED
Payee of a payout (its receiver):
    payout-failed@...        item FAILED, errors.name RECEIVER_ACCOUNT_LOCKED
    payout-blocked@...       item BLOCKED, errors.name RISK_DECLINE
    payout-pending@...       item PENDING, SUCCESS once the clock has moved SETTLE_AFTER_S
    payout-unclaimed@...     item UNCLAIMED (no PayPal account), RETURNED after UNCLAIMED_RETURN_S
                             (30 days; errors.name RECEIVER_UNREGISTERED)
    anything else            SUCCESS (a 13-character PayPal id too)
"""
from __future__ import annotations

import asyncio
import collections
import datetime
import secrets
import string

import msgspec

from paycell import money
from paycell.psp.paypal import wire
from paycell.psp.paypal.sim_signing import Signer
from paycell.psp.simkit import SimCharge, SimKit, SimRefund

SETTLE_AFTER_S = 86_400.0
REVERSE_AFTER_S = 7 * 86_400.0
UNCLAIMED_RETURN_S = 30 * 86_400.0
TOKEN_TTL_S = 32_400  # what PayPal's sandbox answers as expires_in
TOKENS_MAX = 10_000
RESOURCES_MAX = 100_000  # orders + batches remembered before the simulator answers 503
FEE_BASIS_POINTS = 349  # PayPal's checkout fee in the simulator: 3.49 % of the gross
PAYOUT_FEE_BASIS_POINTS = 200  # 2 % of a payout, paid by the sender on top

_ID_CHARS = string.ascii_uppercase + string.digits


def paypal_id(length: int = 17) -> str:
    return "".join(secrets.choice(_ID_CHARS) for _ in range(length))


def magic(email: str | None) -> str:
    """The behaviour an address asks for: its local part before any "+" (lower case)."""
    if not email or "@" not in email:
        return ""
    return email.split("@", 1)[0].split("+", 1)[0].lower()


class SimOrder(msgspec.Struct, kw_only=True):
    id: str
    request: wire.OrderRequest
    status: str  # CREATED, PAYER_ACTION_REQUIRED, APPROVED, COMPLETED, VOIDED
    created_s: float
    buyer: str | None = None
    payer_id: str | None = None
    capture: wire.Capture | None = None
    captured_s: float | None = None
    reversed: bool = False
    refunds: list[wire.Refund] = []
    refunded_minor: int = 0

    @property
    def unit(self) -> wire.PurchaseUnit:
        return self.request.purchase_units[0]

    @property
    def order_key(self) -> str:
        u = self.unit
        return u.custom_id or u.invoice_id or u.reference_id or self.id

    def experience(self) -> wire.ExperienceContext | wire.ApplicationContext | None:
        source = self.request.payment_source
        if source is not None and source.paypal is not None and source.paypal.experience_context is not None:
            return source.paypal.experience_context
        return self.request.application_context


class SimItem(msgspec.Struct, kw_only=True):
    item: wire.PayoutItem
    payout_item_id: str
    transaction_id: str
    status: str
    error: str | None = None
    created_s: float
    fee_minor: int = 0


class SimBatch(msgspec.Struct, kw_only=True):
    id: str
    header: wire.SenderBatchHeader
    item: SimItem
    created_s: float


class Movement(msgspec.Struct, frozen=True, kw_only=True):
    """One balance movement of the merchant's PayPal account: a line of the STL report."""

    at_s: float
    transaction_id: str
    invoice_id: str  # paycell's order id
    reference_id: str  # the PayPal order id or payout batch id
    event_code: str  # T0006 checkout payment, T0001 mass pay, T1106 reversal ...
    credit: bool
    gross_minor: int
    fee_minor: int
    fee_credit: bool
    currency: str


class World:
    def __init__(self, kit: SimKit, *, base_url: str, webhook_id: str, client_id: str, client_secret: str) -> None:
        self.kit = kit
        self.base_url = base_url.rstrip("/")
        self.webhook_id = webhook_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.signer = Signer()
        self.account_id = f"SIM{paypal_id(10)}"
        self.reset()

    def reset(self) -> None:
        self.tokens: collections.OrderedDict[str, float] = collections.OrderedDict()  # token -> expiry (sim s)
        self.tokens_issued = 0
        self.orders: dict[str, SimOrder] = {}
        self.batches: dict[str, SimBatch] = {}
        self.batches_by_sender_id: dict[str, str] = {}
        self.request_ids: dict[tuple[str, str], tuple[bytes, str]] = {}  # (route, id) -> (body, resource id)
        self.captures: dict[str, str] = {}  # capture id -> order id
        self.movements: list[Movement] = []
        self.locks: collections.defaultdict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)

    @property
    def cert_url(self) -> str:
        return f"{self.base_url}/v1/notifications/certs/{self.signer.cert_id}"

    def now_s(self) -> float:
        return self.kit.clock.now_s()

    # --- tokens ---------------------------------------------------------------------------------

    def issue_token(self) -> tuple[str, int]:
        token = f"A21AA{secrets.token_urlsafe(32)}"
        self.tokens[token] = self.now_s() + TOKEN_TTL_S
        while len(self.tokens) > TOKENS_MAX:
            self.tokens.popitem(last=False)
        self.tokens_issued += 1
        return token, TOKEN_TTL_S

    def token_valid(self, token: str) -> bool:
        expiry = self.tokens.get(token)
        return expiry is not None and self.now_s() < expiry

    def full(self) -> bool:
        return len(self.orders) + len(self.batches) >= RESOURCES_MAX

    # --- orders ---------------------------------------------------------------------------------

    def create_order(self, request: wire.OrderRequest, amount_minor: int) -> SimOrder:
        source = request.payment_source.paypal if request.payment_source else None
        with_experience = source is not None
        order = SimOrder(id=paypal_id(), request=request, created_s=self.now_s(),
                         status="PAYER_ACTION_REQUIRED" if with_experience else "CREATED",
                         buyer=source.email_address if source else None)
        self.orders[order.id] = order
        unit = order.unit
        self.kit.record(SimCharge(reference=order.id, order_key=order.order_key, direction="payin",
                                  amount_minor=amount_minor, currency=unit.amount.currency_code,
                                  status="requires_action", created_s=order.created_s, updated_s=order.created_s))
        return order

    def approve(self, order: SimOrder, buyer: str | None) -> None:
        order.status = "APPROVED"
        order.buyer = buyer or order.buyer or "buyer@example.com"
        order.payer_id = paypal_id(13)
        self.emit("CHECKOUT.ORDER.APPROVED", "checkout-order", self.order_view(order),
                  f"An order has been approved by buyer {order.buyer}")

    def capture(self, order: SimOrder) -> None:
        """Capture an APPROVED order as its buyer's address says (see the module docstring)."""
        behaviour = magic(order.buyer)
        now = self.now_s()
        unit = order.unit
        charge = self.kit.charges[order.id]
        capture = wire.Capture(
            id=paypal_id(), status="COMPLETED", amount=unit.amount, custom_id=unit.custom_id,
            invoice_id=unit.invoice_id, final_capture=True,
            supplementary_data=wire.SupplementaryData(related_ids=wire.RelatedIds(order_id=order.id)),
            create_time=_iso(now), update_time=_iso(now))
        if behaviour == "capture-declined":
            capture.status = "DECLINED"
            self.kit.update(order.id, "declined", return_code=None)
        elif behaviour == "capture-pending":
            capture.status = "PENDING"
            capture.status_details = wire.StatusDetails(reason="PENDING_REVIEW")
            self.kit.update(order.id, "pending")
        else:
            self._complete(charge, order, capture, now)
        capture.links = self._capture_links(capture.id, order.id)
        order.capture = capture
        order.captured_s = now
        order.status = "COMPLETED"
        self.captures[capture.id] = order.id
        event = {"COMPLETED": "PAYMENT.CAPTURE.COMPLETED", "PENDING": "PAYMENT.CAPTURE.PENDING",
                 "DECLINED": "PAYMENT.CAPTURE.DECLINED"}[capture.status]
        self.emit(event, "capture", capture, f"Payment capture {capture.status.lower()}")

    def _complete(self, charge: SimCharge, order: SimOrder, capture: wire.Capture, now: float) -> None:
        capture.status = "COMPLETED"
        capture.status_details = None
        capture.update_time = _iso(now)
        charge.fee_minor = (charge.amount_minor * FEE_BASIS_POINTS + 5_000) // 10_000
        self.kit.update(order.id, "succeeded")
        self.movements.append(Movement(at_s=now, transaction_id=capture.id, invoice_id=order.order_key,
                                       reference_id=order.id, event_code="T0006", credit=True,
                                       gross_minor=charge.amount_minor, fee_minor=charge.fee_minor, fee_credit=False,
                                       currency=charge.currency))

    def order_view(self, order: SimOrder) -> wire.Order:
        unit = order.unit
        payments = wire.Payments(captures=[order.capture], refunds=list(order.refunds)) if order.capture else None
        view_unit = wire.PurchaseUnit(amount=unit.amount, reference_id=unit.reference_id, custom_id=unit.custom_id,
                                      invoice_id=unit.invoice_id, description=unit.description, payments=payments)
        links = [wire.Link(href=f"{self.base_url}/v2/checkout/orders/{order.id}", rel="self")]
        if order.status in ("CREATED", "PAYER_ACTION_REQUIRED"):
            rel = "payer-action" if order.status == "PAYER_ACTION_REQUIRED" else "approve"
            links.append(wire.Link(href=f"{self.base_url}/checkoutnow?token={order.id}", rel=rel))
        if order.status == "APPROVED":
            links.append(wire.Link(href=f"{self.base_url}/v2/checkout/orders/{order.id}/capture", rel="capture",
                                   method="POST"))
        payer = wire.Payer(email_address=order.buyer, payer_id=order.payer_id) if order.payer_id else None
        source = None
        if order.payer_id:
            source = wire.PaymentSource(paypal=wire.PaypalSource(email_address=order.buyer, account_id=order.payer_id))
        return wire.Order(id=order.id, status=order.status, intent="CAPTURE", purchase_units=[view_unit],
                          payment_source=source, payer=payer, create_time=_iso(order.created_s), links=links)

    def _capture_links(self, capture_id: str, order_id: str) -> list[wire.Link]:
        return [wire.Link(href=f"{self.base_url}/v2/payments/captures/{capture_id}", rel="self"),
                wire.Link(href=f"{self.base_url}/v2/checkout/orders/{order_id}", rel="up")]

    # --- payouts --------------------------------------------------------------------------------

    def create_batch(self, request: wire.PayoutRequest, amount_minor: int) -> SimBatch:
        item = request.items[0]
        sender_batch_id = request.sender_batch_header.sender_batch_id or paypal_id()
        now = self.now_s()
        behaviour = magic(item.receiver)
        status, error = {
            "payout-failed": ("FAILED", "RECEIVER_ACCOUNT_LOCKED"),
            "payout-blocked": ("BLOCKED", "RISK_DECLINE"),
            "payout-pending": ("PENDING", None),
            "payout-unclaimed": ("UNCLAIMED", None),
        }.get(behaviour, ("SUCCESS", None))
        sim_item = SimItem(item=item, payout_item_id=paypal_id(13), transaction_id=paypal_id(), status=status,
                           error=error, created_s=now)
        batch = SimBatch(id=paypal_id(13), header=request.sender_batch_header, item=sim_item, created_s=now)
        self.batches[batch.id] = batch
        self.batches_by_sender_id[sender_batch_id] = batch.id
        order_key = item.sender_item_id or sender_batch_id
        kit_status = {"SUCCESS": "succeeded", "FAILED": "declined", "BLOCKED": "declined"}.get(status, "pending")
        self.kit.record(SimCharge(reference=batch.id, order_key=order_key, direction="payout",
                                  amount_minor=amount_minor, currency=item.amount.currency, status=kit_status,
                                  created_s=now, updated_s=now))
        if status == "SUCCESS":
            self._payout_paid(batch, now)
        self._emit_item(batch)
        return batch

    def _payout_paid(self, batch: SimBatch, now: float) -> None:
        charge = self.kit.charges[batch.id]
        charge.fee_minor = (charge.amount_minor * PAYOUT_FEE_BASIS_POINTS + 5_000) // 10_000
        batch.item.fee_minor = charge.fee_minor
        self.movements.append(Movement(at_s=now, transaction_id=batch.item.transaction_id, invoice_id=charge.order_key,
                                       reference_id=batch.id, event_code="T0001", credit=False,
                                       gross_minor=charge.amount_minor, fee_minor=charge.fee_minor, fee_credit=False,
                                       currency=charge.currency))

    def _emit_item(self, batch: SimBatch) -> None:
        event = {"SUCCESS": "SUCCEEDED"}.get(batch.item.status, batch.item.status)
        self.emit(f"PAYMENT.PAYOUTS-ITEM.{event}", "payouts_item", self.item_view(batch),
                  f"A payout item is {batch.item.status.lower()}")

    def batch_view(self, batch: SimBatch, *, with_items: bool = True) -> wire.PayoutBatch:
        final = batch.item.status not in ("PENDING", "NEW")
        amount = batch.item.item.amount
        header = wire.PayoutBatchHeader(
            payout_batch_id=batch.id, batch_status="SUCCESS" if final and with_items else "PENDING",
            sender_batch_header=batch.header, time_created=_iso(batch.created_s),
            time_completed=_iso(batch.created_s) if final and with_items else None, amount=amount,
            fees=wire.PayoutAmount(currency=amount.currency,
                                   value=money.format_amount(batch.item.fee_minor, amount.currency)))
        links = [wire.Link(href=f"{self.base_url}/v1/payments/payouts/{batch.id}", rel="self")]
        return wire.PayoutBatch(batch_header=header, items=[self.item_view(batch)] if with_items else [], links=links)

    def item_view(self, batch: SimBatch) -> wire.PayoutItemDetails:
        item = batch.item
        amount = item.item.amount
        return wire.PayoutItemDetails(
            payout_item_id=item.payout_item_id, transaction_status=item.status, payout_batch_id=batch.id,
            payout_item=item.item, transaction_id=item.transaction_id,
            sender_batch_id=batch.header.sender_batch_id,
            payout_item_fee=wire.PayoutAmount(currency=amount.currency,
                                              value=money.format_amount(item.fee_minor, amount.currency)),
            time_processed=_iso(item.created_s),
            errors=wire.ItemError(name=item.error, message=item.error.replace("_", " ").lower()) if item.error else None,
            links=[wire.Link(href=f"{self.base_url}/v1/payments/payouts-item/{item.payout_item_id}", rel="item"),
                   wire.Link(href=f"{self.base_url}/v1/payments/payouts/{batch.id}", rel="batch")])

    # --- time passes ----------------------------------------------------------------------------

    def on_clock(self) -> None:
        """Settle what waited for the clock: pending captures and payouts, reversals, unclaimed."""
        now = self.now_s()
        for order in list(self.orders.values()):
            capture = order.capture
            if capture is None or order.captured_s is None:
                continue
            behaviour = magic(order.buyer)
            if capture.status == "PENDING" and now - order.captured_s >= SETTLE_AFTER_S:
                self._complete(self.kit.charges[order.id], order, capture, now)
                self.emit("PAYMENT.CAPTURE.COMPLETED", "capture", capture, "Payment completed")
            if (behaviour == "capture-reversed" and capture.status == "COMPLETED" and not order.reversed
                    and now - order.captured_s >= REVERSE_AFTER_S):
                self._reverse(order, capture, now)
        for batch in list(self.batches.values()):
            item = batch.item
            if item.status == "PENDING" and now - item.created_s >= SETTLE_AFTER_S:
                item.status = "SUCCESS"
                self.kit.update(batch.id, "succeeded")
                self._payout_paid(batch, now)
                self._emit_item(batch)
            elif item.status == "UNCLAIMED" and now - item.created_s >= UNCLAIMED_RETURN_S:
                item.status, item.error = "RETURNED", "RECEIVER_UNREGISTERED"
                self.kit.update(batch.id, "declined")
                self._emit_item(batch)

    def refund(self, order: SimOrder, amount_minor: int, request: wire.RefundRequest) -> wire.Refund:
        """Refund `amount_minor` of the order's COMPLETED (or partly refunded) capture; the caller
        checked what is left. Sandbox refunds complete at once."""
        capture = order.capture
        assert capture is not None and capture.amount is not None
        now = self.now_s()
        currency = capture.amount.currency_code
        refund_id = paypal_id()
        refund = wire.Refund(
            id=refund_id, status="COMPLETED",
            amount=wire.Amount(currency_code=currency, value=money.format_amount(amount_minor, currency)),
            custom_id=request.custom_id, invoice_id=request.invoice_id, note_to_payer=request.note_to_payer,
            links=[wire.Link(href=f"{self.base_url}/v2/payments/refunds/{refund_id}", rel="self"),
                   wire.Link(href=f"{self.base_url}/v2/payments/captures/{capture.id}", rel="up")])
        order.refunds.append(refund)
        order.refunded_minor += amount_minor
        charge = self.kit.charges[order.id]
        full = order.refunded_minor == charge.amount_minor
        capture.status = "REFUNDED" if full else "PARTIALLY_REFUNDED"
        capture.update_time = _iso(now)
        if full:
            self.kit.update(order.id, "refunded")
        self.kit.record_refund(SimRefund(reference=refund_id, charge_reference=order.id, order_key=order.order_key,
                                         key=request.invoice_id or refund_id, amount_minor=amount_minor,
                                         currency=currency, status="succeeded", created_s=now))
        self.emit("PAYMENT.CAPTURE.REFUNDED", "refund", refund, "A payment capture was refunded")
        return refund

    def _reverse(self, order: SimOrder, capture: wire.Capture, now: float) -> None:
        order.reversed = True
        capture.status = "REFUNDED"
        capture.update_time = _iso(now)
        charge = self.kit.update(order.id, "returned", return_code="paypal_reversed")
        refund = wire.Refund(id=paypal_id(), status="COMPLETED", amount=capture.amount, custom_id=capture.custom_id,
                             invoice_id=capture.invoice_id, note_to_payer="Payment reversed (buyer complaint)",
                             links=[wire.Link(href=f"{self.base_url}/v2/payments/refunds/{paypal_id()}", rel="self"),
                                    wire.Link(href=f"{self.base_url}/v2/payments/captures/{capture.id}", rel="up")])
        self.movements.append(Movement(at_s=now, transaction_id=refund.id, invoice_id=order.order_key,
                                       reference_id=order.id, event_code="T1106", credit=False,
                                       gross_minor=charge.amount_minor, fee_minor=0, fee_credit=True,
                                       currency=charge.currency))
        self.emit("PAYMENT.CAPTURE.REVERSED", "refund", refund, "A payment was reversed")

    # --- webhooks -------------------------------------------------------------------------------

    def emit(self, event_type: str, resource_type: str, resource: msgspec.Struct, summary: str) -> str:
        event_id = f"WH-{paypal_id(17)}-{paypal_id(17)}"
        body = msgspec.json.encode({
            "id": event_id, "event_version": "1.0", "create_time": _iso(self.now_s()),
            "resource_type": resource_type, "resource_version": "2.0", "event_type": event_type,
            "summary": summary, "resource": resource,
            "links": [{"href": f"{self.base_url}/v1/notifications/webhooks-events/{event_id}", "rel": "self",
                       "method": "GET"}],
        })
        # Signed with wall time at each attempt: the delivery happens now, whatever the simulated
        # business clock says, and a held or retried one is not stale.
        self.kit.outbox.send(event_id, event_type, lambda: self.signer.headers(
            body, self.webhook_id, self.cert_url, sent_at=datetime.datetime.now(datetime.timezone.utc)), body)
        return event_id


def _iso(at_s: float) -> str:
    return datetime.datetime.fromtimestamp(at_s, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
