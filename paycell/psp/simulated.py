"""The adapter for paycell's PSP simulator (`paycell.psp.simulator`), over real HTTP.

The simulator's wire format (`reference`, `state`, `refusal_code`, its error bodies) ends here;
callers get `PspResult`s and typed errors from `paycell.psp.base`.
"""
from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Literal
from urllib.parse import quote

import aiohttp
import msgspec
from yarl import URL

from paycell.config.settings import Settings
from paycell.psp.base import (Charge, Outcome, PspRejected, PspResult, PspTransientError, WebhookEvent,
                              WebhookRejected)


# payment option -> the tokens the test simulator issues for it (`tok_<instrument>_<behaviour>`).
TOKEN_PATTERNS = {option: re.compile(rf"tok_{part}_[a-z0-9]{{1,64}}") for option, part in {
    "card": "card", "bank_account": "bank", "paypal": "paypal", "apple_pay": "applepay", "google_pay": "googlepay",
}.items()}


def create(settings: Settings) -> SimulatedPsp:
    return SimulatedPsp(settings.psp_sim_url, settings.psp_timeout_s)


def create_instance(settings: Settings, name: str) -> SimulatedPsp:
    """Another instance of this connector, `name`, on the simulator PAYCELL_PSP_TEST_CONNECTORS
    points it at (development and tests: a second connector to route and fail over to)."""
    return SimulatedPsp(settings.psp_test_connectors[name], settings.psp_timeout_s, name=name)


def missing(settings: Settings) -> str | None:
    return None if settings.psp_sim_url else "PAYCELL_PSP_SIM_URL"


class _ChargeRequest(msgspec.Struct):
    direction: str
    amount_minor: int
    currency: str
    instrument: str


class _ChargeResponse(msgspec.Struct):
    reference: str
    state: Literal["paid", "refused", "processing"]
    refusal_code: str | None = None


class _ErrorResponse(msgspec.Struct):
    error: str = "unknown"
    message: str = ""


_OUTCOMES: dict[str, Outcome] = {"paid": "succeeded", "refused": "declined", "processing": "pending"}

# 4xx answers that say nothing about the charge: "not now" (408, 429), "not with these
# credentials" (401, 403: an API key mid-rotation is our problem, not the payment's), or "this
# key is already in use" (409: the PSP holds or is making a charge under it). The outcome stays
# unknown: retry, asking for the charge's status first.
_TRANSIENT_4XX = frozenset({401, 403, 408, 409, 429})


class SimulatedPsp:
    """`Psp` for the simulator. One adapter belongs to one event loop (its HTTP session does)."""

    def __init__(self, base_url: str, timeout_s: float, name: str = "test") -> None:
        assert timeout_s > 0, timeout_s
        self.name = name
        self._charges_url = URL(base_url) / "v1" / "charges"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, charge: Charge) -> PspResult:
        body = msgspec.json.encode(_ChargeRequest(
            direction=charge.direction, amount_minor=charge.amount_minor,
            currency=charge.currency, instrument=charge.instrument,
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

    async def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
        raise WebhookRejected(f"{self.name}: the test simulator sends no webhooks (its pending charges are polled)")

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
            self._session = aiohttp.ClientSession(timeout=self._timeout)
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
        decline_code = wire.refusal_code if wire.state == "refused" else None
        return PspResult(status=_OUTCOMES[wire.state], psp_reference=wire.reference, decline_code=decline_code)

    def _error(self, status: int, payload: bytes) -> PspTransientError | PspRejected:
        try:
            wire = msgspec.json.decode(payload, type=_ErrorResponse)
        except msgspec.DecodeError:
            wire = _ErrorResponse(message=payload[:200].decode(errors="replace"))
        text = f"{self.name}: HTTP {status} {wire.error}: {wire.message}"
        if 400 <= status < 500 and status not in _TRANSIENT_4XX:
            return PspRejected(text)
        return PspTransientError(text)  # 5xx and anything unexpected: the outcome is unknown
