"""The Adyen connector: a thin aiohttp client for Checkout's `/payments` and `/payments/details`
and the Payout API's `/submitThirdParty` (the `Adyen` SDK is synchronous; paycell uses only its
notification HMAC helper, in webhooks.py).

Instruments are Adyen stored payment method ids (`storedPaymentMethodId`, 16 characters) that
belong to the shopper `Charge.customer_ref` (Adyen's `shopperReference`, paycell's user id).
Pay-ins send them as `scheme` (card), `applepay` or `googlepay`. A charge whose caller gives a
`return_url` has a customer present who can be redirected (3-D Secure): it goes as
`Ecommerce` + `CardOnFile`; without one it is merchant-initiated: `ContAuth` +
`UnscheduledCardOnFile`. Adyen requires a `returnUrl` on every payment, so one is always sent:
the charge's, else settings.psp_return_url with `connector=adyen&order_id=<order id>` added (so
the return handler knows which order the shopper came back for).

Pay-outs go through `/submitThirdParty` to payout details stored under the shopper (recurring
contract PAYOUT, `selectedRecurringDetailReference` = the instrument): it pays out to a stored
card or bank account without paycell ever seeing either. Adyen answers
`[payout-submit-received]`; the payout is then confirmed by a reviewer (Adyen's four-eyes flow:
a second API credential or the Customer Area), and PAYOUT_THIRDPARTY / PAYOUT_DECLINE /
PAYOUT_EXPIRE bring its outcome. (`/payout`, the instant card payout, needs raw card data: PCI
scope paycell does not take.)

Idempotency: `Idempotency-Key` = paycell's order id on every call (`<order id>:details` for
/payments/details). Adyen keeps keys for at least 31 days (company account wide) and answers a
repeat with the first response.

Refunds: `POST /payments/{pspReference}/refunds` (Idempotency-Key and merchant reference: the
reversal id, `rev-<id>`). Adyen answers `received`; the REFUND notification says how it ended
(apply_event records it). With no lookup for a modification, `reversal_status` replays the
request under the same key: Adyen answers the first `received` again (still pending) when it
holds one, and a refusal of the replay means it holds none. A pay-out cannot be recalled through
the Payout API: refused (ReversalUnsupported).

Status: Adyen Checkout has no status lookup. `status` replays the same request under the same
key. For a payment whose first answer was final (Authorised, Refused, Error, Cancelled) the
replay is the truth. For one whose first answer was Pending, Received or an action, the replay
returns that STALE first answer even after the payment has moved on: such a payment stays
"pending"/"requires_action" to `status`, and the AUTHORISATION notification is the truth
(`/payments/details` after a redirect is the other way to learn it). A replay after a lost
response is still safe: it is answered with the payment the lost request made, or makes it now,
once. So `status` never returns None for a charge it could send: Adyen cannot say "no payment"
without making one, and the router must never fail an Adyen order over to another connector on
the strength of this status. It returns None only for a charge it could never have sent (no
customer_ref, a malformed token): no request under that key ever left paycell.
"""
from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping

import aiohttp
import msgspec
import structlog
from yarl import URL

from paycell.config.settings import Settings
from paycell.psp.adyen import webhooks, wire
from paycell.psp.base import (Charge, PspRejected, PspResult, PspTransientError, Reversal, ReversalResult,
                              ReversalUnsupported, WebhookEvent)
from paycell.tls import client as tls_client

log = structlog.get_logger("paycell.psp.adyen")

# A stored payment method / recurring detail id as Adyen issues them (e.g. 8415718415172204,
# M5N7TQ4TG5PFWR50): the same shape for every option, so the option the user declared decides
# the paymentMethod type.
STORED_ID = re.compile(r"[A-Z0-9]{16}")
TOKEN_PATTERNS: dict[str, re.Pattern] = {
    "card": STORED_ID, "apple_pay": STORED_ID, "google_pay": STORED_ID, "bank_account": STORED_ID,
}
PAYIN_TYPES = {"card": "scheme", "apple_pay": "applepay", "google_pay": "googlepay"}
PAYOUT_OPTIONS = frozenset({"card", "bank_account"})  # stored PAYOUT details: a card or a bank account
# Currencies paycell settles in that Adyen processes (amounts in Adyen's minor units, which match
# ISO 4217's exponents for these: JPY 0, KWD 3).
CURRENCIES = frozenset({"USD", "EUR", "GBP", "JPY", "KWD", "CHF", "CAD", "AUD", "SEK", "NOK", "DKK", "PLN"})
IDEMPOTENCY_KEY_CHARS_MAX = 64  # Adyen's limit
IDEMPOTENCY_WINDOW_S = 31 * 86_400  # Adyen keeps keys at least this long

# 4xx answers that say nothing about the payment: credentials (401, 403: a key mid-rotation is
# paycell's problem, not the payment's), "not now" (408, 429) and "this key is in use" (409).
_TRANSIENT_4XX = frozenset({401, 403, 408, 409, 429})
# Adyen's "request already processed or in progress" (HTTP 409 or 422).
_KEY_IN_USE = "704"


def create(settings: Settings) -> AdyenPsp:
    return AdyenPsp(settings)


def missing(settings: Settings) -> str | None:
    unset = [f"PAYCELL_{name.upper()}" for name in
             ("adyen_api_key", "adyen_merchant_account", "adyen_hmac_key", "adyen_checkout_base_url",
              "adyen_payout_base_url") if not getattr(settings, name)]
    if unset:
        return ", ".join(unset)
    if settings.order_deadline_s >= IDEMPOTENCY_WINDOW_S:
        # `status` replays the submit: past Adyen's key window the replay would be a second payment.
        return f"PAYCELL_ORDER_DEADLINE_S below {IDEMPOTENCY_WINDOW_S} (Adyen's idempotency window)"
    return None


class _Unsendable(ValueError):
    """A charge this connector can never send (so no request under its key ever reached Adyen)."""


class AdyenPsp:
    """`Psp` for Adyen. One adapter belongs to one event loop (its HTTP session does)."""

    name = "adyen"

    def __init__(self, settings: Settings) -> None:
        assert settings.psp_timeout_s > 0, settings.psp_timeout_s
        self._checkout = URL(settings.adyen_checkout_base_url)
        self._payout = URL(settings.adyen_payout_base_url)
        self._api_key = settings.adyen_api_key
        self._merchant = settings.adyen_merchant_account
        self._hmac_key = settings.adyen_hmac_key
        self._return_url = URL(settings.psp_return_url)
        self._timeout = aiohttp.ClientTimeout(total=settings.psp_timeout_s)
        self._tls = tls_client.for_connector(settings, self.name)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- the protocol ---------------------------------------------------------------------------

    async def submit(self, charge: Charge) -> PspResult:
        try:
            url, body = self._request_for(charge)
        except _Unsendable as exc:
            raise PspRejected(f"adyen: {exc}") from None
        return await self._send(charge, url, body)

    async def status(self, charge: Charge) -> PspResult | None:
        try:
            url, body = self._request_for(charge)
        except _Unsendable:
            return None
        return await self._send(charge, url, body)  # the replay: see the module docstring

    async def reverse(self, reversal: Reversal) -> ReversalResult:
        charge = reversal.charge
        if charge.direction != "payin":
            raise ReversalUnsupported("adyen: a third-party pay-out cannot be recalled through the Payout API")
        if not charge.psp_reference:
            raise PspRejected(f"adyen: no pspReference for order {charge.idempotency_key}")
        body = msgspec.json.encode(wire.RefundRequest(
            merchantAccount=self._merchant, amount=wire.Amount(currency=reversal.currency, value=reversal.amount_minor),
            reference=f"rev-{reversal.idempotency_key}"))
        url = self._checkout.joinpath("payments", charge.psp_reference, "refunds")
        status, payload, headers = await self._post(url, body, reversal.idempotency_key)
        if status not in (200, 201):
            raise self._error(status, payload, headers)
        try:
            answer = msgspec.json.decode(payload, type=wire.RefundResponse)
        except msgspec.DecodeError as exc:
            raise PspTransientError(f"adyen: unreadable refund answer: {exc}") from exc
        log.info("adyen.refund", reversal_id=reversal.idempotency_key, psp_reference=answer.pspReference,
                 status=answer.status)
        if answer.status != "received":
            raise PspTransientError(f"adyen: refund {answer.pspReference} answered {answer.status!r}")
        return ReversalResult(status="pending", psp_reference=answer.pspReference)

    async def reversal_status(self, reversal: Reversal) -> ReversalResult | None:
        try:
            return await self.reverse(reversal)  # the replay: see the module docstring
        except ReversalUnsupported:
            raise
        except PspRejected:
            return None

    async def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
        return webhooks.verify(body, hmac_key=self._hmac_key, merchant_account=self._merchant)

    def webhook_response(self) -> tuple[int, str, bytes]:
        return 200, "text/plain", b"[accepted]"

    def supports(self, direction: str, payment_option: str, currency: str) -> bool:
        options = PAYIN_TYPES if direction == "payin" else PAYOUT_OPTIONS
        return payment_option in options and currency in CURRENCIES

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._session = None
        self._loop = None

    # -- Adyen only -----------------------------------------------------------------------------

    async def payment_details(self, charge: Charge, details: Mapping[str, str]) -> PspResult:
        """The outcome of a payment the shopper came back to from a redirect (3-D Secure):
        `details` is what Adyen appended to the returnUrl (`redirectResult`). Its own key
        (`<order id>:details`) makes a repeat answer the first result."""
        body = msgspec.json.encode(wire.DetailsRequest(details=dict(details)))
        key = f"{charge.idempotency_key}:details"
        status, payload, headers = await self._post(self._checkout / "payments" / "details", body, key)
        return self._answer(charge, status, payload, headers, payout=False)

    # -- requests -------------------------------------------------------------------------------

    def _request_for(self, charge: Charge) -> tuple[URL, bytes]:
        """The exact request for `charge`: built only from the charge and settings, so a replay
        (status) sends the same body under the same key."""
        if not 0 < len(charge.idempotency_key) <= IDEMPOTENCY_KEY_CHARS_MAX:
            raise _Unsendable(f"the order id must be 1..{IDEMPOTENCY_KEY_CHARS_MAX} characters for Adyen")
        if not STORED_ID.fullmatch(charge.instrument):
            raise _Unsendable("the instrument is not an Adyen stored payment method id")
        if not charge.customer_ref:
            raise _Unsendable("a stored payment method needs the shopper reference (customer_ref)")
        if charge.amount_minor <= 0:
            raise _Unsendable("the amount must be positive")
        amount = wire.Amount(currency=charge.currency, value=charge.amount_minor)
        if charge.direction == "payout":
            if charge.payment_option not in PAYOUT_OPTIONS:
                raise _Unsendable(f"no Adyen pay-out to {charge.payment_option!r}")
            return self._payout / "submitThirdParty", msgspec.json.encode(wire.SubmitRequest(
                merchantAccount=self._merchant, reference=charge.idempotency_key, amount=amount,
                recurring=wire.Recurring(), selectedRecurringDetailReference=charge.instrument,
                shopperReference=charge.customer_ref))
        method_type = PAYIN_TYPES.get(charge.payment_option)
        if method_type is None:
            raise _Unsendable(f"no Adyen pay-in from {charge.payment_option!r}")
        present = charge.return_url is not None
        return_url = charge.return_url or str(self._return_url.update_query(
            connector=self.name, order_id=charge.idempotency_key))
        return self._checkout / "payments", msgspec.json.encode(wire.PaymentRequest(
            merchantAccount=self._merchant, reference=charge.idempotency_key, amount=amount,
            paymentMethod=wire.PaymentMethod(type=method_type, storedPaymentMethodId=charge.instrument),
            returnUrl=return_url, shopperReference=charge.customer_ref,
            shopperInteraction="Ecommerce" if present else "ContAuth",
            recurringProcessingModel="CardOnFile" if present else "UnscheduledCardOnFile"))

    async def _send(self, charge: Charge, url: URL, body: bytes) -> PspResult:
        status, payload, headers = await self._post(url, body, charge.idempotency_key)
        return self._answer(charge, status, payload, headers, payout=charge.direction == "payout")

    def _client(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed:
            self._session = tls_client.session(self._tls, timeout=self._timeout)
            self._loop = loop
        # A session is bound to the loop it was made on; using it from another one hangs or breaks.
        assert self._loop is loop, "adyen adapter used from a second event loop"
        return self._session

    async def _post(self, url: URL, body: bytes, key: str) -> tuple[int, bytes, Mapping[str, str]]:
        headers = {"X-API-Key": self._api_key, "Idempotency-Key": key, "Content-Type": "application/json"}
        try:
            async with self._client().post(url, data=body, headers=headers) as response:
                return response.status, await response.read(), response.headers
        except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise PspTransientError(f"adyen: POST {url.path}: {type(exc).__name__} {exc}") from exc

    # -- answers --------------------------------------------------------------------------------

    def _answer(self, charge: Charge, status: int, payload: bytes, headers: Mapping[str, str], *,
                payout: bool) -> PspResult:
        if status != 200:
            raise self._error(status, payload, headers)
        try:
            result = self._payout_result(payload) if payout else self._payment_result(payload)
        except (msgspec.DecodeError, KeyError) as exc:
            # Adyen answered but paycell cannot read it: the payment may exist, so it is unknown.
            raise PspTransientError(f"adyen: unreadable answer: {exc}") from exc
        log.info("adyen.answer", order_id=charge.idempotency_key, status=result.status,
                 psp_reference=result.psp_reference, decline_code=result.decline_code)
        return result

    def _payment_result(self, payload: bytes) -> PspResult:
        wire_result = msgspec.json.decode(payload, type=wire.PaymentResponse)
        outcome = wire.RESULT_OUTCOMES[wire_result.resultCode]  # KeyError: a resultCode paycell does not know
        ref = wire_result.pspReference or ""
        if wire_result.resultCode == "PartiallyAuthorised":
            log.error("adyen.partially_authorised", psp_reference=ref, amount=wire_result.amount)
        if outcome == "declined":
            return PspResult(status="declined", psp_reference=ref, decline_code=wire.decline_code(
                wire_result.resultCode, wire_result.refusalReasonCode, wire_result.refusalReason))
        if outcome == "requires_action":
            action = wire_result.action
            url = action and (action.url or action.downloadUrl)
            if not url:
                log.warning("adyen.action_without_url", psp_reference=ref, action=action and action.type)
            return PspResult(status="requires_action", psp_reference=ref, action_url=url or None)
        return PspResult(status=outcome, psp_reference=ref)

    def _payout_result(self, payload: bytes) -> PspResult:
        wire_result = msgspec.json.decode(payload, type=wire.SubmitResponse)
        if wire_result.resultCode in wire.PAYOUT_RECEIVED:
            return PspResult(status="pending", psp_reference=wire_result.pspReference)
        if wire_result.resultCode == "Refused":
            return PspResult(status="declined", psp_reference=wire_result.pspReference,
                             decline_code=wire.decline_code("refused", None, wire_result.refusalReason))
        raise KeyError(f"payout resultCode {wire_result.resultCode!r}")

    @staticmethod
    def _error(status: int, payload: bytes, headers: Mapping[str, str]) -> PspTransientError | PspRejected:
        try:
            error = msgspec.json.decode(payload, type=wire.ServiceError)
        except msgspec.DecodeError:
            error = wire.ServiceError(message=payload[:200].decode(errors="replace"))
        text = f"adyen: HTTP {status} errorCode {error.errorCode or '-'}: {error.message}"
        transient_header = headers.get("transient-error", "").lower() == "true"
        if error.errorCode == _KEY_IN_USE:
            # A request under this key is in progress (transient-error: true: ask again later) or
            # was processed with another body (do not resend this one). Neither says "no payment".
            return PspTransientError(text) if transient_header else PspRejected(text)
        if transient_header or status in _TRANSIENT_4XX or not 400 <= status < 500:
            return PspTransientError(text)  # 5xx and anything unexpected: the outcome is unknown
        return PspRejected(text)
