"""What the Stripe simulator holds and how its PaymentIntents move: created and confirmed in one
request, then (3-D Secure) authenticated by the customer, (ACH) settled or failed as the
simulated clock passes business days, and possibly disputed after success. Every change of
state sends the signed webhook Stripe would send, through the kit's outbox.

Kept in memory, bounded (INTENTS_MAX); `POST /_sim/reset` forgets everything.
"""
from __future__ import annotations

import collections
import datetime
import hashlib
import hmac
import itertools
import secrets
import time
from dataclasses import dataclass, field

import msgspec

from paycell.psp.simkit import SimCharge, SimKit, SimRefund
from paycell.psp.stripe import report, testmodes
from paycell.psp.stripe.testmodes import SimMethod
from paycell.psp.stripe.wire import ACH_RETURN_CODES, ORDER_ID_KEY, REVERSAL_ID_KEY

API_VERSION = "2026-10-28.endive"
INTENTS_MAX = 500_000
IDEMPOTENCY_KEYS_MAX = 500_000
# Stripe's search index trails writes (usually by seconds, up to an hour in an outage): an intent
# becomes searchable this long (simulated time) after it was created.
SEARCH_LAG_S = 2.0
AVAILABLE_AFTER_S = 2 * 86_400


def add_business_days(start_s: float, days: int) -> float:
    """`start_s` moved `days` weekdays on (Saturdays and Sundays do not count)."""
    moment = datetime.datetime.fromtimestamp(start_s, datetime.timezone.utc)
    while days > 0:
        moment += datetime.timedelta(days=1)
        if moment.weekday() < 5:
            days -= 1
    return moment.timestamp()


@dataclass
class Intent:
    id: str
    amount: int
    currency: str  # lower case, as Stripe writes it
    payment_method: str
    method: SimMethod
    metadata: dict[str, str]
    created_s: float
    client_secret: str
    return_url: str | None
    status: str = "requires_confirmation"
    charge_id: str | None = None
    last_payment_error: dict | None = None
    next_action: dict | None = None
    cancellation_reason: str | None = None
    auth_token: str | None = None  # what the 3-D Secure page's URL must carry
    due_s: float | None = None  # when the next timed change (ACH settle / fail, return) happens
    due: str | None = None  # "settle", "fail" or "dispute"

    def render(self) -> dict:
        """The PaymentIntent as Stripe's API writes it."""
        return {
            "id": self.id, "object": "payment_intent", "amount": self.amount,
            "amount_received": self.amount if self.status == "succeeded" else 0,
            "capture_method": "automatic", "confirmation_method": "automatic",
            "client_secret": self.client_secret, "created": int(self.created_s), "currency": self.currency,
            "cancellation_reason": self.cancellation_reason, "last_payment_error": self.last_payment_error,
            "latest_charge": self.charge_id, "livemode": False, "metadata": self.metadata,
            "next_action": self.next_action, "payment_method": self.payment_method,
            "payment_method_types": [self.method.type], "status": self.status,
        }


@dataclass
class Refund:
    id: str
    payment_intent: str
    charge: str
    amount: int
    currency: str
    metadata: dict[str, str]
    created_s: float
    status: str = "succeeded"

    def render(self) -> dict:
        """The Refund as Stripe's API writes it."""
        return {"id": self.id, "object": "refund", "amount": self.amount, "charge": self.charge,
                "created": int(self.created_s), "currency": self.currency, "metadata": self.metadata,
                "payment_intent": self.payment_intent, "reason": None, "status": self.status}


@dataclass
class Stored:
    """An idempotent answer, replayed for the same key and parameters."""

    fingerprint: bytes
    status: int
    body: bytes
    request_id: str


@dataclass
class StripeSimState:
    kit: SimKit
    webhook_secret: str
    intents: dict[str, Intent] = field(default_factory=dict)
    by_order: dict[str, list[str]] = field(default_factory=lambda: collections.defaultdict(list))
    idempotency: dict[str, Stored] = field(default_factory=dict)
    timed: set[str] = field(default_factory=set)  # intents with a `due` change
    balance: list[report.BalanceTransaction] = field(default_factory=list)
    refunds: dict[str, list[Refund]] = field(default_factory=lambda: collections.defaultdict(list))  # by intent

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._prefix = secrets.token_hex(4)
        self.kit.on_reset.append(self.reset)
        self.kit.on_clock.append(self.tick)
        self.kit.report = lambda day: report.itemized_csv(self.balance, day)

    def reset(self) -> None:
        self.intents.clear()
        self.by_order.clear()
        self.idempotency.clear()
        self.timed.clear()
        self.balance.clear()
        self.refunds.clear()

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{self._prefix}{next(self._ids):016d}"

    # --- idempotency --------------------------------------------------------------------------

    def remember(self, key: str, stored: Stored) -> None:
        if len(self.idempotency) >= IDEMPOTENCY_KEYS_MAX:
            self.idempotency.pop(next(iter(self.idempotency)))  # Stripe forgets keys too (after 24 h)
        self.idempotency[key] = stored

    # --- creation -----------------------------------------------------------------------------

    def full(self) -> bool:
        return len(self.intents) >= INTENTS_MAX

    def create(self, *, amount: int, currency: str, payment_method: str, method: SimMethod, metadata: dict[str, str],
               return_url: str | None, confirm: bool, idempotency_key: str | None, auth_url) -> Intent:
        """A new PaymentIntent, confirmed when `confirm` (its outcome decided by the test method)."""
        now_s = self.kit.clock.now_s()
        intent = Intent(id=self.new_id("pi"), amount=amount, currency=currency, payment_method=payment_method,
                        method=method, metadata=metadata, created_s=now_s,
                        client_secret=f"secret_{secrets.token_hex(12)}", return_url=return_url)
        intent.client_secret = f"{intent.id}_{intent.client_secret}"
        self.intents[intent.id] = intent
        order_id = metadata.get(ORDER_ID_KEY)
        if order_id is not None:
            self.by_order[order_id].append(intent.id)
        if not confirm:
            return intent
        self.kit.record(SimCharge(reference=intent.id, order_key=order_id or idempotency_key or intent.id,
                                  direction="payin", amount_minor=amount, currency=currency.upper(),
                                  status="pending", created_s=now_s, updated_s=now_s))
        intent.charge_id = self.new_id("ch")
        if method.authenticate:
            self._require_action(intent, auth_url)
        elif method.type == "us_bank_account":
            self._process(intent)
        elif method.decline is not None:
            self._fail(intent)
        else:
            self._succeed(intent)
        return intent

    # --- transitions --------------------------------------------------------------------------

    def _require_action(self, intent: Intent, auth_url) -> None:
        intent.status = "requires_action"
        intent.auth_token = secrets.token_urlsafe(16)
        if intent.return_url:
            intent.next_action = {"type": "redirect_to_url", "redirect_to_url": {
                "url": auth_url(intent), "return_url": intent.return_url}}
        else:  # without a return_url Stripe leaves authentication to Stripe.js
            intent.next_action = {"type": "use_stripe_sdk", "use_stripe_sdk": {"type": "three_d_secure_redirect"}}
        self.kit.update(intent.id, "requires_action")
        self.send("payment_intent.requires_action", intent)

    def _process(self, intent: Intent) -> None:
        intent.status = "processing"
        if intent.method.decline is not None:
            intent.due, days = "fail", testmodes.ACH_FAIL_BUSINESS_DAYS
        else:
            intent.due, days = "settle", testmodes.ACH_SETTLE_BUSINESS_DAYS
        intent.due_s = add_business_days(intent.created_s, days)
        self.timed.add(intent.id)
        self.send("payment_intent.processing", intent)

    def _succeed(self, intent: Intent) -> None:
        now_s = self.kit.clock.now_s()
        intent.status = "succeeded"
        intent.next_action = None
        fee = report.fee_minor(intent.method.type, intent.amount)
        charge = self.kit.update(intent.id, "succeeded")
        charge.fee_minor = fee
        self._book(intent, now_s, intent.amount, fee, "charge", "Payment")
        self.send("payment_intent.succeeded", intent)
        if intent.method.dispute_reason is not None:
            if intent.method.type == "us_bank_account":
                intent.due, intent.due_s = "dispute", add_business_days(now_s, testmodes.ACH_RETURN_BUSINESS_DAYS)
                self.timed.add(intent.id)
            else:  # a card dispute: Stripe opens it moments after the charge in test mode
                self._dispute(intent)

    def _fail(self, intent: Intent) -> None:
        decline = intent.method.decline
        assert decline is not None
        intent.status = "requires_payment_method"
        intent.next_action = None
        intent.last_payment_error = error_object(decline, intent)
        ach = intent.method.type == "us_bank_account"
        self.kit.update(intent.id, "declined", return_code=_return_code(intent, decline.code) if ach else None)
        self.send("payment_intent.payment_failed", intent)

    def _dispute(self, intent: Intent) -> None:
        reason = intent.method.dispute_reason or "general"
        now_s = self.kit.clock.now_s()
        dispute = {"id": self.new_id("dp"), "object": "dispute", "amount": intent.amount, "charge": intent.charge_id,
                   "currency": intent.currency, "created": int(now_s), "livemode": False, "metadata": {},
                   "payment_intent": intent.id, "reason": reason, "is_charge_refundable": False,
                   # ACH disputes are final at once; a card dispute awaits evidence.
                   "status": "lost" if intent.method.type == "us_bank_account" else "needs_response"}
        self.kit.update(intent.id, "returned", return_code=_return_code(intent, reason))
        self._book(intent, now_s, -intent.amount, report.DISPUTE_FEE_MINOR, "dispute", f"Dispute: {reason}")
        self.send("charge.dispute.created", intent, obj=dispute)

    def authenticate(self, intent: Intent, approved: bool) -> None:
        """The customer finished 3-D Secure on the simulator's page."""
        if intent.status != "requires_action":
            return
        if not approved:
            intent.status = "requires_payment_method"
            intent.next_action = None
            intent.last_payment_error = {
                "type": "invalid_request_error", "code": "payment_intent_authentication_failure",
                "message": "The provided PaymentMethod has failed authentication. You can provide payment_method_data "
                           "or a new PaymentMethod to attempt to fulfill this PaymentIntent again.",
                "payment_method": {"id": intent.payment_method, "object": "payment_method", "type": "card"}}
            self.kit.update(intent.id, "declined")
            self.send("payment_intent.payment_failed", intent)
        elif intent.method.decline is not None:
            self._fail(intent)
        else:
            self._succeed(intent)

    def cancel(self, intent: Intent, reason: str | None) -> None:
        intent.status = "canceled"
        intent.next_action = None
        intent.cancellation_reason = reason
        self.timed.discard(intent.id)
        if intent.id in self.kit.charges:
            self.kit.update(intent.id, "cancelled")
        self.send("payment_intent.canceled", intent)

    def refunded_minor(self, intent: Intent) -> int:
        return sum(r.amount for r in self.refunds.get(intent.id, ()) if r.status in ("succeeded", "pending"))

    def refund(self, intent: Intent, amount: int, metadata: dict[str, str]) -> Refund:
        """Refund `amount` of a succeeded intent (the caller checked what is left): card refunds
        succeed at once in test mode, as they do on Stripe."""
        refund = Refund(id=self.new_id("re"), payment_intent=intent.id, charge=intent.charge_id or "", amount=amount,
                        currency=intent.currency, metadata=metadata, created_s=self.kit.clock.now_s())
        self.refunds[intent.id].append(refund)
        self.kit.record_refund(SimRefund(reference=refund.id, charge_reference=intent.id,
                                         order_key=intent.metadata.get(ORDER_ID_KEY, intent.id),
                                         key=metadata.get(REVERSAL_ID_KEY, refund.id), amount_minor=amount,
                                         currency=intent.currency.upper(), status="succeeded",
                                         created_s=refund.created_s))
        if self.refunded_minor(intent) == intent.amount and intent.id in self.kit.charges:
            self.kit.update(intent.id, "refunded")
        self.send("refund.created", intent, obj=refund.render())
        return refund

    def tick(self) -> None:
        """Make every timed change that is due by the simulated clock (ACH settle, fail, return)."""
        now_s = self.kit.clock.now_s()
        for intent_id in sorted(self.timed, key=lambda i: self.intents[i].due_s or 0.0):
            intent = self.intents[intent_id]
            while intent.due_s is not None and intent.due_s <= now_s:
                due, intent.due, intent.due_s = intent.due, None, None
                if due == "settle":
                    self._succeed(intent)
                elif due == "fail":
                    self._fail(intent)
                elif due == "dispute":
                    self._dispute(intent)
            if intent.due_s is None:
                self.timed.discard(intent_id)

    # --- search, ledger, webhooks -------------------------------------------------------------

    def search(self, order_id: str) -> list[Intent]:
        """What Stripe's search index shows for the order: intents older than the index's lag."""
        indexed_before_s = self.kit.clock.now_s() - SEARCH_LAG_S
        return [self.intents[i] for i in self.by_order.get(order_id, ())
                if self.intents[i].created_s <= indexed_before_s]

    def _book(self, intent: Intent, now_s: float, gross_minor: int, fee_minor: int, category: str,
              description: str) -> None:
        self.balance.append(report.BalanceTransaction(
            id=self.new_id("txn"), created_s=now_s, available_on_s=now_s + AVAILABLE_AFTER_S,
            currency=intent.currency.upper(), gross_minor=gross_minor, fee_minor=fee_minor,
            reporting_category=category, description=description, charge_id=intent.charge_id or "",
            payment_intent_id=intent.id, order_id=intent.metadata.get(ORDER_ID_KEY, "")))

    def send(self, type_: str, intent: Intent, *, obj: dict | None = None) -> None:
        """Queue the signed event Stripe sends for this change."""
        event_id = self.new_id("evt")
        body = msgspec.json.encode({
            "id": event_id, "object": "event", "api_version": API_VERSION, "created": int(self.kit.clock.now_s()),
            "data": {"object": obj if obj is not None else intent.render()}, "livemode": False,
            "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None}, "type": type_})
        self.kit.outbox.send(event_id, type_, lambda: {"Content-Type": "application/json; charset=utf-8",
                                                       "Stripe-Signature": sign(body, self.webhook_secret)}, body)


def sign(body: bytes, secret: str, timestamp_s: int | None = None) -> str:
    """Stripe's `Stripe-Signature` for `body`: t=<unix s>,v1=<hex HMAC-SHA256 of "t.body">. The
    time is the wall clock's (the receiver checks it against its own), not the simulated one."""
    t = int(time.time()) if timestamp_s is None else timestamp_s
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def error_object(decline: testmodes.Decline, intent: Intent) -> dict:
    """Stripe's error object for a failed attempt (a 402's `error`, an intent's `last_payment_error`)."""
    error = {"type": "card_error", "code": decline.code, "message": decline.message, "charge": intent.charge_id,
             "doc_url": f"https://stripe.com/docs/error-codes/{decline.code.replace('_', '-')}",
             "payment_method": {"id": intent.payment_method, "object": "payment_method", "type": intent.method.type}}
    if decline.decline_code is not None:
        error["decline_code"] = decline.decline_code
    return error


def _return_code(intent: Intent, code: str) -> str:
    """The NACHA return code of an ACH failure or return; a card dispute's reason as it is."""
    if intent.method.type == "us_bank_account":
        return ACH_RETURN_CODES.get(code, code)
    return code
