"""The bank-rail connector: ACH debits (pay-ins) and credits (pay-outs) through Modern Treasury's
Payment Orders API, polled (and told by webhook) until the rail settles them.

    POST /api/payment_orders           create (header Idempotency-Key: paycell's order id)
    GET  /api/payment_orders/{id}      one payment order
    GET  /api/payment_orders?metadata[paycell_order_id]=...   find the order's payment order
                                       after a lost response, or once the provider has forgotten
                                       the idempotency key (it keeps them 24 hours)

Reversals. A pay-in (an ACH debit) is refunded by a new ACH credit of the refunded amount to the
same external account (Idempotency-Key: paycell's reversal id, which also rides in the payment
order's metadata), pending until the rail settles it (a business day after the next cut-off);
`reversal_status` finds it by that metadata. This is what NACHA allows for a refund: a reversing
entry is reserved for erroneous entries. A pay-out (an ACH credit) could be cancelled only before
the cut-off took it to the bank (PATCH status=cancelled), and paycell completes a pay-out only once
the rail settled it, long past its cut-off: a completed pay-out is never recalled here
(ReversalUnsupported; the operator asks the receiving bank).

HTTP Basic authentication with the organization id and an API key. The user's instrument is the
id of the external account (a counterparty's bank account) the provider issued when it was linked.
Only USD ACH, both directions: `supports` says so, and anything else is refused before a call.
"""
from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Mapping

import aiohttp
import msgspec
import structlog
from yarl import URL

from paycell.config.settings import Settings
from paycell.psp.base import (Charge, Direction, PspRejected, PspResult, PspTransientError, Reversal, ReversalResult,
                              ReversalUnsupported, WebhookEvent)
from paycell.psp.bank import webhooks, wire
from paycell.tls import client as tls_client

log = structlog.get_logger("paycell.psp.bank")

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# payment option -> what the provider's token looks like: an external account id.
TOKEN_PATTERNS = {"bank_account": re.compile(_UUID)}

CURRENCIES = frozenset({"USD"})
# Pages of a metadata search read before giving up (the filter should leave one payment order;
# a server that ignored it would hand back everything, page after page).
SEARCH_PAGES_MAX = 5
SEARCH_PER_PAGE = 25
# 4xx answers that say nothing about the payment order: "not now" (408, 429), "not with these
# credentials" (401, 403), "a request with this key is still being stored" (409).
_TRANSIENT_4XX = frozenset({401, 403, 408, 409, 429})

_REQUIRED = {
    "bank_api_base_url": "PAYCELL_BANK_API_BASE_URL",
    "bank_organization_id": "PAYCELL_BANK_ORGANIZATION_ID",
    "bank_api_key": "PAYCELL_BANK_API_KEY",
    "bank_originating_account_id": "PAYCELL_BANK_ORIGINATING_ACCOUNT_ID",
    "bank_webhook_secret": "PAYCELL_BANK_WEBHOOK_SECRET",
}


def create(settings: Settings) -> BankPsp:
    return BankPsp(base_url=settings.bank_api_base_url, organization_id=settings.bank_organization_id,
                   api_key=settings.bank_api_key, originating_account_id=settings.bank_originating_account_id,
                   webhook_key=settings.bank_webhook_secret, timeout_s=settings.psp_timeout_s,
                   tls=tls_client.for_connector(settings, "bank"))


def missing(settings: Settings) -> str | None:
    unset = [env for field, env in _REQUIRED.items() if not getattr(settings, field)]
    return ", ".join(unset) or None


class BankPsp:
    """`Psp` for a Modern Treasury organization. One adapter belongs to one event loop."""

    name = "bank"

    def __init__(self, *, base_url: str, organization_id: str, api_key: str, originating_account_id: str,
                 webhook_key: str, timeout_s: float, tls: ssl.SSLContext | None = None) -> None:
        assert timeout_s > 0, timeout_s
        self._orders_url = URL(base_url) / "api" / "payment_orders"
        self._headers = {"Authorization": aiohttp.encode_basic_auth(organization_id, api_key)}
        self._originating_account_id = originating_account_id
        self._webhook_key = webhook_key
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._tls = tls or tls_client.context()
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, charge: Charge) -> PspResult:
        self._check(charge)
        request = wire.PaymentOrderCreate(
            type="ach", direction=wire.DIRECTIONS[charge.direction], amount=charge.amount_minor,
            currency=charge.currency, originating_account_id=self._originating_account_id,
            receiving_account_id=charge.instrument, metadata=_metadata(charge),
            description=f"paycell {charge.direction} {charge.idempotency_key}")
        headers = {"Idempotency-Key": charge.idempotency_key, "Content-Type": "application/json"}
        status, payload, _ = await self._request("POST", self._orders_url, data=msgspec.json.encode(request),
                                                 headers=headers)
        if status in (200, 201):
            order = self._decode(payload)
            log.info("bank.payment_order", order_id=charge.idempotency_key, payment_order=order.id,
                     status=order.status)
            return self._result(order)
        raise self._error(status, payload, "create")

    async def status(self, charge: Charge) -> PspResult | None:
        """The payment order made for `charge`, by its id when paycell knows it, else by the order
        id in its metadata. None only when the provider holds none for this order."""
        if charge.psp_reference:
            url = self._orders_url / charge.psp_reference
            status, payload, _ = await self._request("GET", url)
            if status == 200:
                order = self._decode(payload)
                if order.metadata.get(wire.ORDER_ID_KEY) == charge.idempotency_key:
                    return self._result(order)
                log.error("bank.reference_mismatch", order_id=charge.idempotency_key, payment_order=order.id)
            elif status != 404:
                raise self._error(status, payload, "retrieve")
        found = await self._search(charge.idempotency_key)
        if len(found) > 1:
            # Two payment orders for one paycell order: never pick one; a person must look.
            log.error("bank.duplicate_payment_orders", order_id=charge.idempotency_key,
                      payment_orders=[o.id for o in found])
            raise PspTransientError(f"bank: {len(found)} payment orders carry order {charge.idempotency_key}")
        return self._result(found[0]) if found else None

    async def reverse(self, reversal: Reversal) -> ReversalResult:
        charge = self._refundable(reversal)
        request = wire.PaymentOrderCreate(
            type="ach", direction="credit", amount=reversal.amount_minor, currency=reversal.currency,
            originating_account_id=self._originating_account_id, receiving_account_id=charge.instrument,
            metadata={wire.REVERSAL_ID_KEY: reversal.idempotency_key, wire.REFUND_OF_KEY: charge.idempotency_key},
            description=f"paycell refund {reversal.idempotency_key}")
        headers = {"Idempotency-Key": reversal.idempotency_key, "Content-Type": "application/json"}
        status, payload, _ = await self._request("POST", self._orders_url, data=msgspec.json.encode(request),
                                                 headers=headers)
        if status in (200, 201):
            return self._refund_result(self._decode(payload))
        raise self._error(status, payload, "create refund")

    async def reversal_status(self, reversal: Reversal) -> ReversalResult | None:
        self._refundable(reversal)
        found = await self._search(reversal.idempotency_key, key=wire.REVERSAL_ID_KEY)
        if len(found) > 1:
            raise PspTransientError(f"bank: {len(found)} payment orders carry reversal {reversal.idempotency_key}")
        return self._refund_result(found[0]) if found else None

    def _refundable(self, reversal: Reversal) -> Charge:
        charge = reversal.charge
        if charge.direction != "payin":
            raise ReversalUnsupported("bank: an ACH credit can be cancelled only before the cut-off; a completed "
                                      "pay-out has gone to the bank and is not recalled here")
        if reversal.currency not in CURRENCIES or not TOKEN_PATTERNS["bank_account"].fullmatch(charge.instrument):
            raise PspRejected("bank: the refunded pay-in was not an ACH debit from an external account")
        return charge

    @staticmethod
    def _refund_result(order: wire.PaymentOrder) -> ReversalResult:
        outcome = wire.REFUND_OUTCOMES.get(order.status)
        if outcome is None:
            raise PspTransientError(f"bank: refund payment order {order.id} has an unknown status {order.status!r}")
        return ReversalResult(status=outcome, psp_reference=order.id,
                              failure_code=wire.decline_code(order) if outcome == "failed" else None)

    async def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
        return webhooks.verify(self._webhook_key, headers, body)

    def webhook_response(self) -> tuple[int, str, bytes]:
        return 200, "application/json", b'{"received": true}'

    def supports(self, direction: Direction, payment_option: str, currency: str) -> bool:
        return direction in wire.DIRECTIONS and payment_option == "bank_account" and currency in CURRENCIES

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._session = None
        self._loop = None

    def _check(self, charge: Charge) -> None:
        """Refuse what the rail cannot carry before asking (nothing can have been made for it)."""
        if charge.currency not in CURRENCIES:
            raise PspRejected(f"bank: ACH moves only {', '.join(sorted(CURRENCIES))}, not {charge.currency}")
        if not TOKEN_PATTERNS["bank_account"].fullmatch(charge.instrument):
            raise PspRejected("bank: the instrument is not an external account id")
        if charge.amount_minor <= 0:
            raise PspRejected(f"bank: amount must be positive, got {charge.amount_minor}")

    async def _search(self, order_id: str, *, key: str = wire.ORDER_ID_KEY) -> list[wire.PaymentOrder]:
        """Every payment order whose metadata names `order_id` under `key` (checked here too: a
        filter the server ignored must not make another order's payment look like this one's)."""
        found: list[wire.PaymentOrder] = []
        after_cursor = None
        for _ in range(SEARCH_PAGES_MAX):
            query = {f"metadata[{key}]": order_id, "per_page": str(SEARCH_PER_PAGE)}
            if after_cursor:
                query["after_cursor"] = after_cursor
            status, payload, headers = await self._request("GET", self._orders_url.with_query(query))
            if status != 200:
                raise self._error(status, payload, "list")
            try:
                page = msgspec.json.decode(payload, type=list[wire.PaymentOrder])
            except msgspec.DecodeError as exc:
                raise PspTransientError(f"bank: unreadable payment order list: {exc}") from exc
            found += [o for o in page if o.metadata.get(key) == order_id]
            after_cursor = headers.get("X-After-Cursor")
            if not after_cursor:
                return found
        raise PspTransientError(f"bank: the search for order {order_id} did not end within {SEARCH_PAGES_MAX} pages")

    def _client(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed:
            self._session = tls_client.session(self._tls, timeout=self._timeout, headers=self._headers)
            self._loop = loop
        assert self._loop is loop, "bank adapter used from a second event loop"
        return self._session

    async def _request(self, method: str, url: URL, **kwargs) -> tuple[int, bytes, Mapping[str, str]]:
        try:
            async with self._client().request(method, url, **kwargs) as response:
                return response.status, await response.read(), response.headers
        except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise PspTransientError(f"bank: {method} {url.path}: {type(exc).__name__} {exc}") from exc

    @staticmethod
    def _decode(payload: bytes) -> wire.PaymentOrder:
        try:
            return msgspec.json.decode(payload, type=wire.PaymentOrder)
        except msgspec.DecodeError as exc:
            # The provider answered but we cannot read it: a payment order may exist; outcome unknown.
            raise PspTransientError(f"bank: unreadable payment order: {exc}") from exc

    @staticmethod
    def _result(order: wire.PaymentOrder) -> PspResult:
        try:
            return wire.result(order)
        except KeyError:
            raise PspTransientError(f"bank: payment order {order.id} has an unknown status {order.status!r}") from None

    @staticmethod
    def _error(status: int, payload: bytes, action: str) -> PspTransientError | PspRejected:
        try:
            detail = msgspec.json.decode(payload, type=wire.ErrorBody).errors
        except msgspec.DecodeError:
            detail = wire.ErrorDetail(message=payload[:200].decode(errors="replace"))
        text = f"bank: {action}: HTTP {status} {detail.code}: {detail.message}"
        if detail.parameter:
            text += f" ({detail.parameter})"
        if 400 <= status < 500 and status not in _TRANSIENT_4XX:
            return PspRejected(text)
        return PspTransientError(text)


def _metadata(charge: Charge) -> dict[str, str]:
    metadata = {wire.ORDER_ID_KEY: charge.idempotency_key}
    if charge.customer_ref:
        metadata[wire.USER_ID_KEY] = charge.customer_ref
    return metadata
