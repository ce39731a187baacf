"""The adapter for paycell's PSP simulator (`paycell.psp.simulator`), over real HTTP.

The simulator's wire format (`reference`, `state`, `refusal_code`, its error bodies) ends here;
callers get `PspResult`s and typed errors from `paycell.psp.base`.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import ssl
import time
from collections.abc import Mapping
from typing import Literal
from urllib.parse import quote

import aiohttp
import msgspec
from yarl import URL

from paycell.config.settings import Settings
from paycell.tls import client as tls_client
from paycell.psp.base import (Charge, Outcome, PspRejected, PspResult, PspTransientError, Reversal, ReversalResult,
                              WebhookEvent, WebhookRejected)


# payment option -> the tokens the test simulator issues for it (`tok_<instrument>_<behaviour>`).
TOKEN_PATTERNS = {option: re.compile(rf"tok_{part}_[a-z0-9]{{1,64}}") for option, part in {
    "card": "card", "bank_account": "bank", "paypal": "paypal", "apple_pay": "applepay", "google_pay": "googlepay",
}.items()}


SIGNATURE_HEADER = "Paycell-Sim-Signature"


def create(settings: Settings) -> SimulatedPsp:
    return SimulatedPsp(settings.psp_sim_url, settings.psp_timeout_s, webhook_secret=settings.psp_sim_webhook_secret,
                        webhook_tolerance_s=settings.psp_sim_webhook_tolerance_s,
                        tls=tls_client.for_connector(settings, "test"))


def create_instance(settings: Settings, name: str) -> SimulatedPsp:
    """Another instance of this connector, `name`, on the simulator PAYCELL_PSP_TEST_CONNECTORS
    points it at (development and tests: a second connector to route and fail over to)."""
    return SimulatedPsp(settings.psp_test_connectors[name], settings.psp_timeout_s, name=name,
                        webhook_secret=settings.psp_sim_webhook_secret,
                        webhook_tolerance_s=settings.psp_sim_webhook_tolerance_s,
                        tls=tls_client.for_connector(settings, name))


def missing(settings: Settings) -> str | None:
    return None if settings.psp_sim_url else "PAYCELL_PSP_SIM_URL"


class _ChargeRequest(msgspec.Struct, omit_defaults=True):
    direction: str
    amount_minor: int
    currency: str
    instrument: str
    return_url: str | None = None


_WireState = Literal["paid", "refused", "processing", "requires_action", "approved", "returned"]


class _ChargeResponse(msgspec.Struct):
    reference: str
    state: _WireState
    refusal_code: str | None = None
    action_url: str | None = None


class _EventCharge(msgspec.Struct):
    key: str
    reference: str
    state: _WireState
    amount_minor: int
    currency: str
    refusal_code: str | None = None
    action_url: str | None = None
    return_code: str | None = None


class _Event(msgspec.Struct):
    id: str
    type: str
    created: int
    data: _EventCharge


class _RefundRequest(msgspec.Struct, omit_defaults=True):
    amount_minor: int
    currency: str
    reason: str = ""


class _RefundResponse(msgspec.Struct):
    reference: str
    state: Literal["succeeded", "failed"]
    failure_code: str | None = None


class _ErrorResponse(msgspec.Struct):
    error: str = "unknown"
    message: str = ""


# "approved": the customer approved, the capture is still to come (a status GET makes it);
# "returned": the charge succeeded and was taken back later (that arrives as its own event).
_OUTCOMES: dict[str, Outcome] = {"paid": "succeeded", "refused": "declined", "processing": "pending",
                                 "requires_action": "requires_action", "approved": "pending",
                                 "returned": "succeeded"}

# 4xx answers that say nothing about the charge: "not now" (408, 429), "not with these
# credentials" (401, 403: an API key mid-rotation is our problem, not the payment's), or "this
# key is already in use" (409: the PSP holds or is making a charge under it). The outcome stays
# unknown: retry, asking for the charge's status first.
_TRANSIENT_4XX = frozenset({401, 403, 408, 409, 429})


class SimulatedPsp:
    """`Psp` for the simulator. One adapter belongs to one event loop (its HTTP session does)."""

    def __init__(self, base_url: str, timeout_s: float, name: str = "test", *, webhook_secret: str = "",
                 webhook_tolerance_s: float = 300, tls: ssl.SSLContext | None = None) -> None:
        assert timeout_s > 0, timeout_s
        self.name = name
        self._webhook_secret = webhook_secret.encode()
        self._webhook_tolerance_s = webhook_tolerance_s
        self._charges_url = URL(base_url) / "v1" / "charges"
        self._refunds_url = URL(base_url) / "v1" / "refunds"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._tls = tls or tls_client.context()
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, charge: Charge) -> PspResult:
        body = msgspec.json.encode(_ChargeRequest(
            direction=charge.direction, amount_minor=charge.amount_minor,
            currency=charge.currency, instrument=charge.instrument, return_url=charge.return_url,
        ))
        headers = {"Idempotency-Key": charge.idempotency_key, "Content-Type": "application/json"}
        status, payload = await self._request("POST", self._charges_url, data=body, headers=headers)
        if status in (200, 201):
            return self._result(payload)
        raise self._error(status, payload)

    async def status(self, charge: Charge) -> PspResult | None:
        # Quote every character of the key so a "/" or "?" in it cannot change the path.
        url = self._charges_url.joinpath(quote(charge.idempotency_key, safe=""), encoded=True)
        status, payload = await self._request("GET", url)
        if status == 200:
            return self._result(payload)
        if status == 404:
            return None
        raise self._error(status, payload)

    async def reverse(self, reversal: Reversal) -> ReversalResult:
        """POST /v1/charges/{charge key}/refunds under the reversal's key (a pay-out: its recall)."""
        url = self._charges_url.joinpath(quote(reversal.charge.idempotency_key, safe=""), encoded=True) / "refunds"
        body = msgspec.json.encode(_RefundRequest(amount_minor=reversal.amount_minor, currency=reversal.currency,
                                                  reason=reversal.reason[:500]))
        headers = {"Idempotency-Key": reversal.idempotency_key, "Content-Type": "application/json"}
        status, payload = await self._request("POST", url, data=body, headers=headers)
        if status in (200, 201):
            return self._reversal(payload)
        raise self._error(status, payload)

    async def reversal_status(self, reversal: Reversal) -> ReversalResult | None:
        url = self._refunds_url.joinpath(quote(reversal.idempotency_key, safe=""), encoded=True)
        status, payload = await self._request("GET", url)
        if status == 200:
            return self._reversal(payload)
        if status == 404:
            return None
        raise self._error(status, payload)

    async def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
        """`Paycell-Sim-Signature: t=<epoch s>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`, within
        the tolerance either way; then the event, in paycell's words."""
        if not self._webhook_secret:
            raise WebhookRejected(f"{self.name}: no webhook secret configured (PAYCELL_PSP_SIM_WEBHOOK_SECRET)")
        timestamp_s, signatures = _signature(headers.get(SIGNATURE_HEADER, ""))
        if abs(time.time() - timestamp_s) > self._webhook_tolerance_s:
            raise WebhookRejected(f"{self.name}: signature timestamp outside the tolerance of "
                                  f"{self._webhook_tolerance_s:g} s")
        expected = hmac.new(self._webhook_secret, f"{timestamp_s}.".encode() + body, hashlib.sha256).hexdigest()
        if not any(hmac.compare_digest(expected, given) for given in signatures):
            raise WebhookRejected(f"{self.name}: signature does not match")
        try:
            wire = msgspec.json.decode(body, type=_Event)
        except msgspec.DecodeError as exc:
            raise WebhookRejected(f"{self.name}: unreadable event: {exc}") from None
        return [_event(wire)]

    def webhook_response(self) -> tuple[int, str, bytes]:
        return 200, "application/json", b'{"received": true}'

    def supports(self, direction: str, payment_option: str, currency: str) -> bool:
        return True  # the test simulator carries every option, direction and currency

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._session = None
        self._loop = None

    def _client(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed:
            self._session = tls_client.session(self._tls, timeout=self._timeout)
            self._loop = loop
        # A session is bound to the loop it was made on; using it from another one hangs or breaks.
        assert self._loop is loop, f"{self.name} adapter used from a second event loop"
        return self._session

    async def _request(self, method: str, url: URL, **kwargs) -> tuple[int, bytes]:
        try:
            async with self._client().request(method, url, **kwargs) as response:
                return response.status, await response.read()
        except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise PspTransientError(f"{self.name}: {method} {url.path}: {type(exc).__name__} {exc}") from exc

    def _result(self, payload: bytes) -> PspResult:
        try:
            wire = msgspec.json.decode(payload, type=_ChargeResponse)
        except msgspec.DecodeError as exc:
            # The PSP answered but we cannot read it: the charge may exist, so treat it as unknown.
            raise PspTransientError(f"{self.name}: unreadable charge: {exc}") from exc
        return _result(wire)

    def _reversal(self, payload: bytes) -> ReversalResult:
        try:
            wire = msgspec.json.decode(payload, type=_RefundResponse)
        except msgspec.DecodeError as exc:
            raise PspTransientError(f"{self.name}: unreadable refund: {exc}") from exc
        return ReversalResult(status=wire.state, psp_reference=wire.reference,
                              failure_code=(wire.failure_code or "refund_failed") if wire.state == "failed" else None)

    def _error(self, status: int, payload: bytes) -> PspTransientError | PspRejected:
        try:
            wire = msgspec.json.decode(payload, type=_ErrorResponse)
        except msgspec.DecodeError:
            wire = _ErrorResponse(message=payload[:200].decode(errors="replace"))
        text = f"{self.name}: HTTP {status} {wire.error}: {wire.message}"
        if 400 <= status < 500 and status not in _TRANSIENT_4XX:
            return PspRejected(text)
        return PspTransientError(text)  # 5xx and anything unexpected: the outcome is unknown


def _result(wire: _ChargeResponse | _EventCharge) -> PspResult:
    status = _OUTCOMES[wire.state]
    return PspResult(status=status, psp_reference=wire.reference,
                     decline_code=wire.refusal_code if status == "declined" else None,
                     action_url=wire.action_url if status == "requires_action" else None)


def _signature(header: str) -> tuple[int, list[str]]:
    """(t, [v1, ...]) of a signature header; WebhookRejected when it is missing or malformed."""
    timestamp, signatures = None, []
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t" and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif name == "v1" and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise WebhookRejected(f"missing or malformed {SIGNATURE_HEADER} header")
    return timestamp, signatures


# The simulator's event type -> what it means to paycell.
_KINDS = {"charge.approved": "approved", "charge.returned": "returned"}


def _event(wire: _Event) -> WebhookEvent:
    kind = _KINDS.get(wire.type, "outcome" if wire.type == f"charge.{wire.data.state}" else "ignored")
    if kind == "outcome" and wire.data.state in ("approved", "returned"):
        kind = "ignored"  # said by their own event types
    return WebhookEvent(
        event_id=wire.id, kind=kind, type=wire.type, order_id=wire.data.key, psp_reference=wire.data.reference,
        result=_result(wire.data) if kind == "outcome" else None,
        return_code=wire.data.return_code if kind == "returned" else None,
        amount_minor=wire.data.amount_minor, currency=wire.data.currency, occurred_at_s=float(wire.created))
