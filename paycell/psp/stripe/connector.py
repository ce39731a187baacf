"""The Stripe connector: PaymentIntents through the official SDK's async client.

A pay-in is ONE request: `POST /v1/payment_intents` with confirm=true, the instrument (a Stripe
PaymentMethod id) as `payment_method`, the amount in minor units, the currency in lower case,
paycell's order id in `metadata[paycell_order_id]` and as the `Idempotency-Key`. Stripe keeps an
idempotent answer for at least 24 hours and replays it for the same key and parameters (a
different body under the same key is a 400 `idempotency_error`); paycell's order deadline
(`order_deadline_s`, one day) keeps every retry inside that window. The parameters are derived
from the `Charge` alone, so a replay always matches the first request.

`status` without a PaymentIntent id asks Stripe's search API for the order id in the metadata.
That index is eventually consistent (usually under a minute behind, up to an hour in an outage),
so a miss right after a lost response is no proof that Stripe holds nothing. The connector then
replays the create under the same key: Stripe answers with the first request's result when
there was one (header `Idempotent-Replayed: true`; the intent is then read afresh, since the
replay shows the state of the time), and otherwise makes the payment now, once, under the key
paycell would have used anyway. `status` returns None only when Stripe refuses that replay as
invalid (400/404 before executing it), the one answer that proves it saved nothing under the key.

Refunds: `POST /v1/refunds` (payment_intent, amount, paycell's reversal id in
`metadata[paycell_reversal_id]` and as the Idempotency-Key). `reversal_status` lists the intent's
refunds (`GET /v1/refunds?payment_intent=`, read from the primary, not a lagging index) and finds
the reversal id in their metadata: a miss there is proof that Stripe made no refund under it.

Pay-outs: Stripe pays third parties only through Connect (transfers to connected accounts),
which paycell's instrument model does not carry: `supports` is False for every pay-out.
Currencies: those whose ISO minor unit is the unit Stripe counts in (two-decimal ones and the
zero-decimal JPY, KRW, VND, CLP) for cards and wallets; USD only for ACH Direct Debit. Not the
three-decimal ones (Stripe wants their last digit 0) nor ISK (Stripe writes it with two decimals).
"""
from __future__ import annotations

import asyncio
from urllib.parse import quote
import re
import ssl
from collections.abc import Mapping

import aiohttp
import msgspec
import stripe
import structlog

from paycell.config.settings import Settings
from paycell.psp.base import (Charge, Direction, PspError, PspRejected, PspResult, PspTransientError, Reversal,
                              ReversalResult, ReversalUnsupported, WebhookEvent)
from paycell.psp.stripe import webhooks
from paycell.tls import client as tls_client
from paycell.psp.stripe.wire import (ORDER_ID_KEY, REVERSAL_ID_KEY, USER_ID_KEY, PaymentIntent, Refund, RefundList,
                                    SearchResult, decode_intent, result_of, reversal_of)

log = structlog.get_logger("paycell.psp.stripe")

# What a Stripe PaymentMethod id looks like: Stripe's own test ids (pm_card_visa,
# pm_usBankAccount_success, ...) or a live one (pm_ and 14+ letters and digits). Apple Pay and
# Google Pay reach Stripe as card PaymentMethods.
_LIVE_ID = r"[A-Za-z0-9]{14,64}"
_CARD_PM = re.compile(rf"pm_(card_[A-Za-z0-9_]{{1,64}}|{_LIVE_ID})")
_BANK_PM = re.compile(rf"pm_(usBankAccount(_[A-Za-z0-9]{{1,64}})?|{_LIVE_ID})")
TOKEN_PATTERNS = {"card": _CARD_PM, "apple_pay": _CARD_PM, "google_pay": _CARD_PM, "bank_account": _BANK_PM}

# paycell payment option -> Stripe's PaymentMethod type.
PAYMENT_METHOD_TYPE = {"card": "card", "apple_pay": "card", "google_pay": "card", "bank_account": "us_bank_account"}

CARD_CURRENCIES = frozenset(
    "USD EUR GBP CHF CAD AUD NZD SEK NOK DKK PLN CZK HUF INR CNY HKD SGD MXN BRL ZAR JPY KRW VND CLP".split())
CURRENCIES = {"card": CARD_CURRENCIES, "us_bank_account": frozenset({"USD"})}

# 4xx answers that say nothing about the payment: "not with these credentials" (401, 403: a key
# mid-rotation), "not now" (408, 429) or "this key is busy" (409: another request under the same
# Idempotency-Key is still running). The outcome stays unknown.
_TRANSIENT_4XX = frozenset({401, 403, 408, 409, 429})
SEARCH_LIMIT = 10
REFUNDS_LIST_LIMIT = 100  # Stripe's page maximum; a payment paycell refunds that often is refused long before


def create(settings: Settings) -> StripePsp:
    return StripePsp(api_base_url=settings.stripe_api_base_url, api_key=settings.stripe_api_key,
                     webhook_secret=settings.stripe_webhook_secret, timeout_s=settings.psp_timeout_s,
                     return_url=settings.psp_return_url or None, tls=tls_client.for_connector(settings, "stripe"))


def missing(settings: Settings) -> str | None:
    names = [name for name, value in (("PAYCELL_STRIPE_API_KEY", settings.stripe_api_key),
                                      ("PAYCELL_STRIPE_WEBHOOK_SECRET", settings.stripe_webhook_secret)) if not value]
    return ", ".join(names) or None


class StripePsp:
    """`Psp` for Stripe. One adapter belongs to one event loop (its HTTP session does)."""

    def __init__(self, *, api_base_url: str, api_key: str, webhook_secret: str, timeout_s: float,
                 return_url: str | None, name: str = "stripe", tls: ssl.SSLContext | None = None) -> None:
        assert timeout_s > 0, timeout_s
        self.name = name
        self._api_base_url = api_base_url.rstrip("/")
        self._api_key = api_key
        self._webhook_secret = webhook_secret
        self._timeout_s = timeout_s
        self._return_url = return_url
        self._tls = tls or tls_client.context()
        self._client: stripe.StripeClient | None = None
        self._http: stripe.AIOHTTPClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- the protocol -------------------------------------------------------------------------

    async def submit(self, charge: Charge) -> PspResult:
        if charge.direction != "payin":
            raise PspRejected(f"{self.name}: pay-outs need Stripe Connect, which this connector does not use")
        try:
            intent, replayed = await self._create(charge)
            if replayed:  # Stripe replayed the first answer as it was then; read the intent as it is now
                intent = await self._retrieve(intent.id)
        except stripe.CardError as exc:
            return self._declined(charge, exc)
        except stripe.StripeError as exc:
            raise self._error(exc, "create PaymentIntent") from exc
        result = result_of(intent)
        log.debug("stripe.submitted", order_id=charge.idempotency_key, psp_reference=result.psp_reference,
                 status=result.status, stripe_status=intent.status)
        return result

    async def status(self, charge: Charge) -> PspResult | None:
        if charge.direction != "payin":
            return None  # `submit` never sends a pay-out to Stripe, so Stripe holds none
        try:
            if charge.psp_reference:
                return result_of(await self._retrieve(charge.psp_reference))
            found = await self._search(charge.idempotency_key)
            if found is not None:
                return result_of(await self._retrieve(found))  # the index may lag on the status too
        except stripe.StripeError as exc:
            raise self._error(exc, "look up PaymentIntent") from exc
        return await self._replay(charge)

    async def reverse(self, reversal: Reversal) -> ReversalResult:
        intent_id = self._refundable(reversal)
        params = {"payment_intent": intent_id, "amount": reversal.amount_minor,
                  "metadata": {REVERSAL_ID_KEY: reversal.idempotency_key,
                               ORDER_ID_KEY: reversal.charge.idempotency_key}}
        try:
            response = await self._stripe().raw_request_async("post", "/v1/refunds",
                                                              idempotency_key=reversal.idempotency_key, **params)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise PspTransientError(f"{self.name}: create Refund: {type(exc).__name__} {exc}") from exc
        except stripe.StripeError as exc:
            raise self._error(exc, "create Refund") from exc
        return reversal_of(_decode(response.body, Refund))

    async def reversal_status(self, reversal: Reversal) -> ReversalResult | None:
        intent_id = self._refundable(reversal)
        try:
            response = await self._stripe().raw_request_async("get", "/v1/refunds", payment_intent=intent_id,
                                                              limit=REFUNDS_LIST_LIMIT)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise PspTransientError(f"{self.name}: list Refunds: {type(exc).__name__} {exc}") from exc
        except stripe.StripeError as exc:
            raise self._error(exc, "list Refunds") from exc
        found = [r for r in _decode(response.body, RefundList).data
                 if r.metadata.get(REVERSAL_ID_KEY) == reversal.idempotency_key]
        return reversal_of(found[0]) if found else None

    def _refundable(self, reversal: Reversal) -> str:
        if reversal.charge.direction != "payin":
            raise ReversalUnsupported(f"{self.name}: pay-outs go through Stripe Connect, which this connector "
                                      "does not use: there is none to reverse")
        if not reversal.charge.psp_reference:
            raise PspRejected(f"{self.name}: no PaymentIntent id for order {reversal.charge.idempotency_key}")
        return reversal.charge.psp_reference

    async def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
        return webhooks.parse(headers, body, self._webhook_secret)

    def webhook_response(self) -> tuple[int, str, bytes]:
        return 200, "application/json", b'{"received": true}'

    def supports(self, direction: Direction, payment_option: str, currency: str) -> bool:
        pm_type = PAYMENT_METHOD_TYPE.get(payment_option)
        return direction == "payin" and pm_type is not None and currency in CURRENCIES[pm_type]

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close_async()
        self._client = self._http = self._loop = None

    # --- requests -----------------------------------------------------------------------------

    def _stripe(self) -> stripe.StripeClient:
        loop = asyncio.get_running_loop()
        if self._client is None:
            self._http = stripe.AIOHTTPClient(timeout=aiohttp.ClientTimeout(total=self._timeout_s),
                                              connector=aiohttp.TCPConnector(ssl=self._tls))
            self._client = stripe.StripeClient(self._api_key, base_addresses={"api": self._api_base_url},
                                               http_client=self._http, max_network_retries=0)
            self._loop = loop
        # The HTTP session is bound to the loop it was made on; another loop would hang or break.
        assert self._loop is loop, f"{self.name} adapter used from a second event loop"
        return self._client

    def params(self, charge: Charge) -> dict:
        """The PaymentIntent create parameters: a function of the charge alone, so a replay under
        the same Idempotency-Key is always the same request."""
        pm_type = PAYMENT_METHOD_TYPE.get(charge.payment_option)
        if pm_type is None:
            raise PspRejected(f"{self.name}: no Stripe payment method type for {charge.payment_option!r}")
        metadata = {ORDER_ID_KEY: charge.idempotency_key}
        if charge.customer_ref:
            metadata[USER_ID_KEY] = charge.customer_ref
        params = {"amount": charge.amount_minor, "currency": charge.currency.lower(),
                  "payment_method": charge.instrument, "payment_method_types": [pm_type],
                  "confirm": True, "metadata": metadata}
        return_url = charge.return_url or self._return_url
        if pm_type == "card" and return_url:
            params["return_url"] = return_url  # where 3-D Secure sends the customer back
        return params

    async def _create(self, charge: Charge) -> tuple[PaymentIntent, bool]:
        """The intent Stripe answered with, and whether the answer is a replay of an earlier one."""
        params = self.params(charge)
        # The SDK's raw request: its encoding, headers, idempotency and typed errors (CardError ...),
        # without building its resource objects, which paycell reads into msgspec structs anyway.
        try:
            response = await self._stripe().raw_request_async(
                "post", "/v1/payment_intents", idempotency_key=charge.idempotency_key, **params)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise PspTransientError(f"{self.name}: create PaymentIntent: {type(exc).__name__} {exc}") from exc
        return decode_intent(response.body), response.headers.get("Idempotent-Replayed") == "true"

    async def _retrieve(self, intent_id: str) -> PaymentIntent:
        try:
            response = await self._stripe().raw_request_async("get", f"/v1/payment_intents/{quote(intent_id, safe='')}")
            return decode_intent(response.body)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise PspTransientError(f"{self.name}: retrieve {intent_id}: {type(exc).__name__} {exc}") from exc

    async def _search(self, order_id: str) -> str | None:
        """The id of the PaymentIntent Stripe's search index holds for `order_id`, if it holds one yet."""
        value = order_id.replace("\\", "\\\\").replace("'", "\\'")
        query = f"metadata['{ORDER_ID_KEY}']:'{value}'"
        try:
            obj = await self._stripe().v1.payment_intents.search_async({"query": query, "limit": SEARCH_LIMIT})
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise PspTransientError(f"{self.name}: search: {type(exc).__name__} {exc}") from exc
        found = _decode_search(obj)
        if len(found) > 1:
            # One key, one intent: Stripe's idempotency makes two impossible unless a key expired.
            log.error("stripe.several_intents_for_order", order_id=order_id, psp_references=[i.id for i in found])
            raise PspTransientError(f"{self.name}: {len(found)} PaymentIntents carry order {order_id}")
        return found[0].id if found else None

    async def _replay(self, charge: Charge) -> PspResult | None:
        """Ask Stripe for the key's first answer by sending the same create again (see the module
        docstring); None only when Stripe refuses it before executing it."""
        log.info("stripe.status_replays_create", order_id=charge.idempotency_key)
        try:
            intent, replayed = await self._create(charge)
        except stripe.CardError as exc:
            return self._declined(charge, exc)
        except stripe.IdempotencyError as exc:
            # Stripe holds another request under this key: something exists, its outcome is unknown.
            raise PspTransientError(f"{self.name}: replay under {charge.idempotency_key}: {exc.user_message}") from exc
        except stripe.StripeError as exc:
            error = self._error(exc, "replay create PaymentIntent")
            if isinstance(error, PspRejected):
                log.warning("stripe.holds_nothing", order_id=charge.idempotency_key, error=str(error))
                return None
            raise error from exc
        if not replayed:
            log.warning("stripe.status_made_the_payment", order_id=charge.idempotency_key, psp_reference=intent.id)
            return result_of(intent)
        try:
            return result_of(await self._retrieve(intent.id))
        except stripe.StripeError as exc:
            raise self._error(exc, "retrieve replayed PaymentIntent") from exc

    # --- answers ------------------------------------------------------------------------------

    def _declined(self, charge: Charge, exc: stripe.CardError) -> PspResult:
        """A 402: the attempt was declined. Stripe's error names the PaymentIntent it failed."""
        body = exc.json_body if isinstance(exc.json_body, dict) else {}
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        intent = error.get("payment_intent")
        reference = intent.get("id") if isinstance(intent, dict) else None
        code = error.get("decline_code") or error.get("code") or "card_declined"
        result = PspResult(status="declined", psp_reference=reference or error.get("charge") or "",
                           decline_code=str(code))
        log.debug("stripe.declined", order_id=charge.idempotency_key, psp_reference=result.psp_reference,
                 decline_code=result.decline_code)
        return result

    def _error(self, exc: stripe.StripeError, what: str) -> PspError:
        status = exc.http_status
        text = f"{self.name}: {what}: HTTP {status} {type(exc).__name__}: {exc.user_message}"
        if status is not None and 400 <= status < 500 and status not in _TRANSIENT_4XX:
            return PspRejected(text)
        return PspTransientError(text)  # connection errors, timeouts, 5xx, 401/403/409/429


def _decode(body: str | bytes, type_):
    try:
        return msgspec.json.decode(body, type=type_)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise PspTransientError(f"stripe: unreadable {type_.__name__}: {exc}") from exc


def _decode_search(obj: stripe.StripeObject) -> list[PaymentIntent]:
    response = obj.last_response
    try:
        if response is not None:
            return msgspec.json.decode(response.body, type=SearchResult).data
        return msgspec.convert(obj.to_dict(), SearchResult).data
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise PspTransientError(f"stripe: unreadable search result: {exc}") from exc

