"""A simulator of Adyen's Checkout API v71 and Payout API v68 for development and tests, served by
`paycell psp-sim` under `/adyen`. State lives in memory.

    POST /checkout/v71/payments               a payment with a stored payment method
    POST /checkout/v71/payments/details       the outcome after a redirect (`redirectResult`)
    POST /pal/servlet/Payout/v68/submitThirdParty   a pay-out to stored payout details
    GET  /checkoutshopper/threeDS/redirect?MD=...   the shopper's 3-D Secure page (no API key)
    /_sim/...                                  the kit's control routes (paycell.psp.simkit)

Like Adyen: `X-API-Key` must be the configured key (401 otherwise); `merchantAccount` must be the
configured one (403 errorCode 901); `Idempotency-Key` (at most 64 characters) answers a repeat with
the same body with the first response, and the same key with another body with 422 errorCode 704
(without `transient-error: true`: do not resend it). Errors have Adyen's body: {"status",
"errorCode", "message", "errorType"}. Outcomes follow sim_methods.py. Every outcome is followed by
an HMAC-signed standard notification (sim_notify.py) to the outbox's URL (by default
`{psp_sim_webhook_base_url}/psp/webhooks/adyen`). `/_sim/reports?date=` is the settlement details
report (sim_report.py), also downloadable as from Adyen's Customer Area at
/reports/download/MerchantAccount/<account>/settlement_detail_report_batch_<n>.csv; `/_sim/clock`
settles Pending payments, sends chargebacks and expires
pay-outs when their time comes.
"""
from __future__ import annotations

import datetime
import hashlib
import heapq
import itertools
import re
import secrets
import string
from typing import TypeVar

import msgspec
import structlog
from aiohttp import web
from yarl import URL

from paycell.config.settings import Settings
from paycell.psp.adyen import sim_methods, sim_notify, sim_report, wire
from paycell.psp.adyen.sim_methods import Behaviour
from paycell.psp.simkit import SIM_KIT, SimCharge, SimKit, SimRefund

log = structlog.get_logger("paycell.psp.adyen.simulator")

BODY_BYTES_MAX = 16_384
KEYS_MAX = 100_000  # idempotency keys remembered before the simulator answers 503
KEY_CHARS_MAX = 64
_REF_ALPHABET = string.ascii_uppercase + string.digits
T = TypeVar("T")
_SIM_STATUS = {"Authorised": "succeeded", "Refused": "declined", "Error": "declined", "Cancelled": "declined"}


class _Payment(msgspec.Struct, kw_only=True):
    psp_reference: str
    reference: str  # the merchant's (paycell's order id)
    amount: wire.Amount
    behaviour: Behaviour
    return_url: str | None = None
    redirect_result: str | None = None  # set once the shopper has been through the 3-D Secure page
    refunded_minor: int = 0  # what refunds took back


class _Stored(msgspec.Struct, frozen=True):
    fingerprint: bytes
    status: int
    body: bytes


def _psp_reference() -> str:
    return "".join(secrets.choice(_REF_ALPHABET) for _ in range(16))


def _error(status: int, code: str, message: str, error_type: str = "validation",
           headers: dict[str, str] | None = None) -> web.Response:
    body = msgspec.json.encode({"status": status, "errorCode": code, "message": message, "errorType": error_type})
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


class AdyenSim:
    def __init__(self, settings: Settings, kit: SimKit) -> None:
        self.api_key = settings.adyen_api_key
        self.merchant = settings.adyen_merchant_account
        self.hmac_key = settings.adyen_hmac_key
        self.kit = kit
        self.reset()
        kit.on_reset.append(self.reset)
        kit.on_clock.append(self.tick)
        kit.report = lambda day: ("text/csv", sim_report.report(self.journal, day, self.merchant))

    def reset(self) -> None:
        self.responses: dict[str, _Stored] = {}
        self.payments: dict[str, _Payment] = {}
        self.redirects: dict[str, str] = {}  # MD token -> pspReference
        self.redirect_results: dict[str, str] = {}  # redirectResult -> pspReference
        self.timers: list[tuple[float, int, str]] = []  # (due, seq, pspReference): a heap
        self.seq = itertools.count()
        self.journal: list[sim_report.Entry] = []

    # -- shared request handling ----------------------------------------------------------------

    def refused_request(self, request: web.Request) -> web.Response | None:
        """Adyen's answer to a request it refuses before looking at it, or None."""
        if not self.api_key or not secrets.compare_digest(request.headers.get("X-API-Key", ""), self.api_key):
            return _error(401, "000", "HTTP Status Response - Unauthorized", "security")
        if len(request.headers.get("Idempotency-Key", "")) > KEY_CHARS_MAX:
            return _error(422, "702", f"Idempotency-Key longer than {KEY_CHARS_MAX} characters")
        return None

    async def get_report(self, request: web.Request) -> web.Response:
        """A settlement details report as Adyen's Customer Area serves it for download:
        `/reports/download/MerchantAccount/<account>/settlement_detail_report_batch_<n>.csv`, batch n
        being the simulator's day n after sim_report.BATCH_EPOCH (Adyen authenticates a report
        user; the simulator takes the API key)."""
        refused = self.refused_request(request)
        if refused is not None:
            return refused
        match = re.fullmatch(r"settlement_detail_report_batch_([0-9]{1,6})\.csv", request.match_info["file"])
        if request.match_info["account"] != self.merchant or match is None:
            raise web.HTTPNotFound(text="no such report")
        day = sim_report.BATCH_EPOCH + datetime.timedelta(days=int(match.group(1)))
        return web.Response(body=sim_report.report(self.journal, day, self.merchant), content_type="text/csv")

    async def begin(self, request: web.Request, type_: type[T]) -> web.Response | tuple[str, bytes, T]:
        """What every API call does first: authenticate, replay a repeated key, decode the body and
        check its merchant account and amount. Returns the early answer, or (key, fingerprint, body)."""
        refused = self.refused_request(request)
        if refused is not None:
            return refused
        raw = await request.read()
        key, fingerprint = request.headers.get("Idempotency-Key", ""), hashlib.sha256(raw).digest()
        replayed = self.replay(key, fingerprint)
        if replayed is not None:
            return replayed
        try:
            body = msgspec.json.decode(raw, type=type_)
        except msgspec.DecodeError as exc:
            return _error(422, "702", f"Structure of the request is invalid: {exc}")
        if isinstance(body, wire.PaymentRequest | wire.SubmitRequest):
            invalid = self._invalid(body.merchantAccount, body.amount)
            if invalid is not None:
                return invalid
        return key, fingerprint, body

    def replay(self, key: str, fingerprint: bytes) -> web.Response | None:
        stored = self.responses.get(key) if key else None
        if stored is None:
            if key and len(self.responses) >= KEYS_MAX:
                return _error(503, "000", "the simulator remembers too many keys; POST /_sim/reset", "internal")
            return None
        if stored.fingerprint != fingerprint:
            return _error(422, "704", "request already processed or in progress")
        return web.Response(body=stored.body, status=stored.status, content_type="application/json",
                            headers={"Idempotency-Key": key})

    def answer(self, key: str, fingerprint: bytes, payload: dict) -> web.Response:
        body = msgspec.json.encode(payload)
        if key:
            self.responses[key] = _Stored(fingerprint, 200, body)
        return web.Response(body=body, content_type="application/json", headers={"Idempotency-Key": key} if key else None)

    def notify(self, payment: _Payment, event_code: str, success: bool, *, amount: wire.Amount | None = None,
               reason: str = "", psp_reference: str | None = None, extra: dict[str, str] | None = None) -> None:
        amount = amount or payment.amount
        sim_notify.send(self.kit, sim_notify.item(
            psp_reference=psp_reference or payment.psp_reference, event_code=event_code, success=success,
            merchant_account=self.merchant, merchant_reference=payment.reference, amount_minor=amount.value,
            currency=amount.currency, now_s=self.kit.clock.now_s(), reason=reason, extra=extra,
            original_reference=payment.psp_reference if psp_reference else None, hmac_key=self.hmac_key))

    def book(self, payment: _Payment, type_: str, *, debit: bool, amount: wire.Amount | None = None,
             modification: str | None = None) -> None:
        amount = amount or payment.amount
        commission = 0 if debit else sim_report.commission_minor(amount.value)
        self.journal.append(sim_report.Entry(
            at_s=self.kit.clock.now_s(), type=type_, psp_reference=payment.psp_reference,
            merchant_reference=payment.reference, modification_reference=modification or payment.psp_reference,
            currency=amount.currency, debit_minor=amount.value if debit else 0,
            credit_minor=0 if debit else amount.value, commission_minor=commission))

    def record(self, payment: _Payment, direction: str, status: str) -> None:
        now_s = self.kit.clock.now_s()
        fee = 0 if direction == "payout" else sim_report.commission_minor(payment.amount.value)
        self.kit.record(SimCharge(reference=payment.psp_reference, order_key=payment.reference, direction=direction,
                                  amount_minor=payment.amount.value, currency=payment.amount.currency,
                                  status=status, created_s=now_s, updated_s=now_s, fee_minor=fee))

    def schedule(self, payment: _Payment) -> None:
        if payment.behaviour.later is None:
            return
        if payment.behaviour.later_after_s == 0:
            self.happen(payment)
            return
        due_s = self.kit.clock.now_s() + payment.behaviour.later_after_s
        heapq.heappush(self.timers, (due_s, next(self.seq), payment.psp_reference))

    def tick(self) -> None:
        now_s = self.kit.clock.now_s()
        while self.timers and self.timers[0][0] <= now_s:
            _, _, ref = heapq.heappop(self.timers)
            self.happen(self.payments[ref])

    # -- what happens after the answer ----------------------------------------------------------

    def happen(self, payment: _Payment) -> None:
        later = payment.behaviour.later
        ref = payment.psp_reference
        if later in ("authorise", "payout_ok"):
            self.kit.update(ref, "succeeded")
            self.book(payment, "PaidOut" if later == "payout_ok" else "Settled", debit=later == "payout_ok")
            self.notify(payment, "AUTHORISATION" if later == "authorise" else "PAYOUT_THIRDPARTY", True)
        elif later in ("refuse", "payout_refused"):
            self.kit.update(ref, "declined")
            self.notify(payment, "AUTHORISATION" if later == "refuse" else "PAYOUT_THIRDPARTY", False, reason="Refused")
        elif later in ("payout_declined", "payout_expire"):
            self.kit.update(ref, "declined")
            self.notify(payment, "PAYOUT_DECLINE" if later == "payout_declined" else "PAYOUT_EXPIRE", True)
        elif later == "chargeback":
            dispute = _psp_reference()
            self.kit.update(ref, "returned", return_code=sim_methods.CHARGEBACK_SCHEME_CODE)
            self.book(payment, "Chargeback", debit=True, modification=dispute)
            self.notify(payment, "CHARGEBACK", True, reason=sim_methods.CHARGEBACK_REASON, psp_reference=dispute,
                        extra={"chargebackReasonCode": sim_methods.CHARGEBACK_SCHEME_CODE,
                               "chargebackSchemeCode": "visa"})
        log.info("adyen_sim.later", psp_reference=ref, later=later)

    # -- handlers -------------------------------------------------------------------------------

    async def post_payments(self, request: web.Request) -> web.Response:
        begun = await self.begin(request, wire.PaymentRequest)
        if isinstance(begun, web.Response):
            return begun
        key, fingerprint, body = begun
        method = body.paymentMethod
        if method.storedPaymentMethodId and not body.shopperReference:
            return _error(422, "702", "shopperReference is required with storedPaymentMethodId")
        behaviour = sim_methods.payin_behaviour(method.holderName, method.storedPaymentMethodId)
        if behaviour is None:
            return _error(422, "800", "Contract not found")
        payment = _Payment(psp_reference=_psp_reference(), reference=body.reference, amount=body.amount,
                           behaviour=behaviour, return_url=body.returnUrl)
        self.payments[payment.psp_reference] = payment
        payload = self._payment_answer(request, payment)
        self.schedule(payment)
        log.info("adyen_sim.payment", reference=body.reference, psp_reference=payment.psp_reference,
                 result_code=behaviour.result_code)
        return self.answer(key, fingerprint, payload)

    def _invalid(self, merchant_account: str, amount: wire.Amount) -> web.Response | None:
        if merchant_account != self.merchant:
            return _error(403, "901", "Invalid Merchant Account", "security")
        if amount.value <= 0 or len(amount.currency) != 3:
            return _error(422, "137", "Invalid amount specified")
        return None

    def _payment_answer(self, request: web.Request, payment: _Payment) -> dict:
        b = payment.behaviour
        payload: dict = {"pspReference": payment.psp_reference, "resultCode": b.result_code,
                         "merchantReference": payment.reference, "amount": msgspec.to_builtins(payment.amount)}
        if b.reason is not None:
            payload |= {"refusalReason": b.reason, "refusalReasonCode": b.reason_code}
        if b.result_code in _SIM_STATUS:
            self.record(payment, "payin", _SIM_STATUS[b.result_code])
            success = b.result_code == "Authorised"
            if success:
                self.book(payment, "Settled", debit=False)
            self.notify(payment, "AUTHORISATION", success, reason=b.reason or "")
        elif b.result_code == "PartiallyAuthorised":
            partial = wire.Amount(currency=payment.amount.currency, value=payment.amount.value // 2)
            payload["amount"] = msgspec.to_builtins(partial)
            self.record(payment, "payin", "pending")
            self.notify(payment, "AUTHORISATION", True, amount=partial)
        elif b.action is not None:
            self.record(payment, "payin", "requires_action")
            payload["action"] = self._action(request, payment)
        else:  # Pending, Received
            self.record(payment, "payin", "pending")
        return payload

    def _action(self, request: web.Request, payment: _Payment) -> dict:
        b = payment.behaviour
        token = secrets.token_urlsafe(16)
        if b.action == "redirect":
            self.redirects[token] = payment.psp_reference
            page = request.app.router["threeds"].url_for().with_query(MD=token)
            return {"type": "redirect", "method": "GET", "paymentMethodType": "scheme",
                    "url": str(request.url.origin().join(page))}
        if b.action == "present":
            page = request.app.router["qr"].url_for().with_query(code=token)
            return {"type": "qrCode", "paymentMethodType": "scheme", "qrCodeData": token,
                    "url": str(request.url.origin().join(page))}
        subtype = "fingerprint" if b.action == "identify" else "challenge"
        return {"type": "threeDS2", "subtype": subtype, "paymentMethodType": "scheme", "token": token}

    async def get_threeds(self, request: web.Request) -> web.Response:
        """The shopper's 3-D Secure page: visiting it authenticates (or fails, per the stored id),
        sends AUTHORISATION, and redirects to the returnUrl with `redirectResult`."""
        ref = self.redirects.get(request.query.get("MD", ""))
        if ref is None:
            raise web.HTTPNotFound(text="no such 3-D Secure session")
        payment = self.payments[ref]
        if payment.redirect_result is None:
            payment.redirect_result = secrets.token_urlsafe(24)
            self.redirect_results[payment.redirect_result] = ref
            ok = payment.behaviour.authenticates
            self.kit.update(ref, "succeeded" if ok else "declined")
            if ok:
                self.book(payment, "Settled", debit=False)
            self.notify(payment, "AUTHORISATION", ok, reason="" if ok else "3D Not Authenticated")
        target = URL(payment.return_url or "/").update_query(redirectResult=payment.redirect_result)
        raise web.HTTPFound(str(target))

    async def get_qr(self, request: web.Request) -> web.Response:
        """Where a PresentToShopper QR code points: the simulator shows the code and nothing happens."""
        return web.Response(text=f"QR code {request.query.get('code', '')}")

    async def post_details(self, request: web.Request) -> web.Response:
        begun = await self.begin(request, wire.DetailsRequest)
        if isinstance(begun, web.Response):
            return begun
        key, fingerprint, body = begun
        ref = self.redirect_results.get(body.details.get("redirectResult", ""))
        if ref is None:
            return _error(422, "14_006", "Invalid redirectResult")
        payment = self.payments[ref]
        payload = {"pspReference": ref, "merchantReference": payment.reference,
                   "amount": msgspec.to_builtins(payment.amount)}
        if payment.behaviour.authenticates:
            payload["resultCode"] = "Authorised"
        else:
            payload |= {"resultCode": "Refused", "refusalReason": "3D Not Authenticated", "refusalReasonCode": "11"}
        return self.answer(key, fingerprint, payload)

    async def post_submit_third_party(self, request: web.Request) -> web.Response:
        begun = await self.begin(request, wire.SubmitRequest)
        if isinstance(begun, web.Response):
            return begun
        key, fingerprint, body = begun
        behaviour = sim_methods.PAYOUT_METHODS.get(body.selectedRecurringDetailReference)
        if behaviour is None:
            return _error(422, "800", "Contract not found")
        payment = _Payment(psp_reference=_psp_reference(), reference=body.reference, amount=body.amount,
                           behaviour=behaviour)
        self.payments[payment.psp_reference] = payment
        self.record(payment, "payout", "pending")
        self.schedule(payment)
        log.info("adyen_sim.payout", reference=body.reference, psp_reference=payment.psp_reference)
        return self.answer(key, fingerprint, {"pspReference": payment.psp_reference,
                                              "resultCode": behaviour.result_code})


    async def post_refunds(self, request: web.Request) -> web.Response:
        """Refund (part of) an authorised payment: 201 `received` at once, then the REFUND
        notification (success=true; false for a payment whose method refuses refunds: sim_methods)."""
        begun = await self.begin(request, wire.RefundRequest)
        if isinstance(begun, web.Response):
            return begun
        key, fingerprint, body = begun
        invalid = self._invalid(body.merchantAccount, body.amount)
        if invalid is not None:
            return invalid
        payment = self.payments.get(request.match_info["psp_reference"])
        charge = payment and self.kit.charges.get(payment.psp_reference)
        if payment is None or charge is None or charge.direction != "payin":
            return _error(422, "167", "Original pspReference required for this operation")
        if charge.status not in ("succeeded", "refunded") or body.amount.currency != payment.amount.currency:
            return _error(422, "167", "Original pspReference required for this operation")
        if payment.refunded_minor + body.amount.value > payment.amount.value:
            return _error(422, "137", "Invalid amount specified")
        refund_ref = _psp_reference()
        payment.refunded_minor += body.amount.value
        ok = payment.behaviour.refund_ok
        if ok:
            if payment.refunded_minor == payment.amount.value:
                self.kit.update(payment.psp_reference, "refunded")
            self.book(payment, "Refunded", debit=True, amount=body.amount, modification=refund_ref)
        else:
            payment.refunded_minor -= body.amount.value
        self.kit.record_refund(SimRefund(reference=refund_ref, charge_reference=payment.psp_reference,
                                         order_key=payment.reference, key=key or refund_ref,
                                         amount_minor=body.amount.value, currency=body.amount.currency,
                                         status="succeeded" if ok else "failed", created_s=self.kit.clock.now_s()))
        sim_notify.send(self.kit, sim_notify.item(
            psp_reference=refund_ref, event_code="REFUND", success=ok, merchant_account=self.merchant,
            merchant_reference=body.reference, amount_minor=body.amount.value, currency=body.amount.currency,
            now_s=self.kit.clock.now_s(), original_reference=payment.psp_reference,
            reason="" if ok else "Refund refused by the scheme", hmac_key=self.hmac_key))
        log.info("adyen_sim.refund", psp_reference=refund_ref, payment=payment.psp_reference, ok=ok)
        payload = msgspec.json.encode({"merchantAccount": self.merchant, "paymentPspReference": payment.psp_reference,
                                       "pspReference": refund_ref, "reference": body.reference, "status": "received",
                                       "amount": msgspec.to_builtins(body.amount)})
        if key:
            self.responses[key] = _Stored(fingerprint, 201, payload)
        return web.Response(body=payload, status=201, content_type="application/json",
                            headers={"Idempotency-Key": key} if key else None)


ADYEN_SIM = web.AppKey("adyen_sim", AdyenSim)


def create_app(settings: Settings) -> web.Application:
    """The Adyen simulator as an aiohttp app (mounted under `/adyen` by `paycell psp-sim`)."""
    app = web.Application(client_max_size=BODY_BYTES_MAX)
    kit = SimKit("adyen", webhook_url=f"{settings.psp_sim_webhook_base_url}/psp/webhooks/adyen")
    kit.mount(app)
    sim = AdyenSim(settings, kit)
    app[SIM_KIT] = kit
    app[ADYEN_SIM] = sim
    app.router.add_post("/checkout/v71/payments", sim.post_payments)
    app.router.add_post("/checkout/v71/payments/details", sim.post_details)
    app.router.add_post("/checkout/v71/payments/{psp_reference}/refunds", sim.post_refunds)
    app.router.add_post("/pal/servlet/Payout/v68/submitThirdParty", sim.post_submit_third_party)
    app.router.add_get("/checkoutshopper/threeDS/redirect", sim.get_threeds, name="threeds")
    app.router.add_get("/checkoutshopper/qr", sim.get_qr, name="qr")
    app.router.add_get("/reports/download/MerchantAccount/{account}/{file}", sim.get_report)
    return app
