"""A thin aiohttp client for PayPal's REST API: OAuth2 client-credentials tokens and JSON calls.

Why not an SDK: the maintained `paypal-server-sdk` is synchronous (it would block the event loop or
need a thread per call) and has neither webhook verification nor Payouts; the older
`paypalrestsdk` and `paypal-checkout-serversdk` are deprecated. paycell needs six endpoints.

The access token (`POST /v1/oauth2/token`, Basic auth with the client id and secret) is cached
until `TOKEN_EARLY_REFRESH_S` before PayPal says it expires, capped at `TOKEN_TTL_S_MAX`, fetched by
one caller at a time, and dropped and fetched again once when an API call answers 401 (a token
PayPal revoked early). It is the only thing cached.

Errors, as `paycell.psp.base` defines them: a timeout, a lost connection, 5xx, 401, 403, 408, 409
and 429 raise PspTransientError (the outcome is unknown, the call may have been carried out);
other 4xx are returned to the caller, which knows which of PayPal's `details[].issue` values are
answers (ORDER_NOT_APPROVED, INSTRUMENT_DECLINED ...) and which are PspRejected.
"""
from __future__ import annotations

import asyncio
import ssl
import time

import aiohttp
import msgspec
import structlog
from yarl import URL

from paycell.psp.base import PspRejected, PspTransientError
from paycell.psp.paypal import wire
from paycell.tls import client as tls_client

log = structlog.get_logger("paycell.psp.paypal")

TOKEN_EARLY_REFRESH_S = 60.0  # refresh this long before PayPal's expiry (clock skew, slow calls)
TOKEN_TTL_S_MAX = 8 * 3600.0  # never trust a token longer than this, whatever expires_in says
RESPONSE_BYTES_MAX = 1 << 20  # a PayPal answer larger than this is not one paycell can read
# 4xx answers that say nothing final about the payment (see paycell.psp.base).
TRANSIENT_4XX = frozenset({401, 403, 408, 409, 429})


class Answer(msgspec.Struct, frozen=True):
    status: int
    body: bytes

    def ok(self) -> bool:
        return 200 <= self.status < 300

    def error(self) -> wire.Error:
        try:
            return msgspec.json.decode(self.body, type=wire.Error)
        except msgspec.DecodeError:
            return wire.Error(name=f"HTTP_{self.status}", message=self.body[:200].decode(errors="replace"))


class PaypalClient:
    """One adapter's HTTP session and access token; belongs to one event loop."""

    def __init__(self, base_url: str, client_id: str, client_secret: str, timeout_s: float,
                 tls: ssl.SSLContext | None = None) -> None:
        assert timeout_s > 0, timeout_s
        self._tls = tls or tls_client.context()
        self.base_url = URL(base_url)
        self._basic = aiohttp.encode_basic_auth(client_id, client_secret)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._token: str | None = None
        self._token_expires_at: float = 0.0  # time.monotonic()
        self._token_lock: asyncio.Lock | None = None
        self.tokens_fetched = 0  # how many times a token was fetched (tests read it)

    def session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed:
            self._session = tls_client.session(self._tls, timeout=self._timeout)
            self._loop = loop
            self._token_lock = asyncio.Lock()
        # A session is bound to the loop it was made on; using it from another one hangs or breaks.
        assert self._loop is loop, "PayPal adapter used from a second event loop"
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._session = None
        self._loop = None
        self._token = None

    def forget_token(self) -> None:
        self._token = None

    async def call(self, method: str, path: str, *, body: msgspec.Struct | None = None,
                   request_id: str | None = None, headers: dict[str, str] | None = None) -> Answer:
        """One API call with a Bearer token; a 401 drops the token and tries once more with a
        fresh one. Raises PspTransientError for unknown outcomes; returns any other answer."""
        url = self.base_url.joinpath(path.lstrip("/"), encoded=True)
        sent = {"Content-Type": "application/json", "Accept": "application/json", **(headers or {})}
        if request_id is not None:
            sent["PayPal-Request-Id"] = request_id
        data = msgspec.json.encode(body) if body is not None else None
        for attempt in (1, 2):
            sent["Authorization"] = f"Bearer {await self._access_token()}"
            answer = await self._send(method, url, data=data, headers=sent)
            if answer.status == 401 and attempt == 1:
                log.info("paypal.token_rejected", path=url.path)
                self.forget_token()
                continue
            break
        if answer.status >= 500 or answer.status in TRANSIENT_4XX:
            err = answer.error()
            raise PspTransientError(f"paypal: {method} {url.path}: HTTP {answer.status} {err.label()}: {err.message}")
        return answer

    async def _access_token(self) -> str:
        self.session()
        assert self._token_lock is not None
        async with self._token_lock:
            if self._token is not None and time.monotonic() < self._token_expires_at:
                return self._token
            answer = await self._send(
                "POST", self.base_url / "v1" / "oauth2" / "token", data={"grant_type": "client_credentials"},
                headers={"Accept": "application/json", "Authorization": self._basic})
            if not answer.ok():
                err = answer.error()
                # Bad credentials are the operator's to fix, not the payment's: unknown, retried,
                # counted by the breaker (paycell.psp.base lists 401/403 as transient).
                raise PspTransientError(f"paypal: access token refused: HTTP {answer.status} "
                                        f"{err.label()}: {err.error_description or err.message}")
            try:
                token = msgspec.json.decode(answer.body, type=wire.TokenResponse)
            except msgspec.DecodeError as exc:
                raise PspTransientError(f"paypal: unreadable access token answer: {exc}") from exc
            lifetime_s = min(float(token.expires_in), TOKEN_TTL_S_MAX) - TOKEN_EARLY_REFRESH_S
            self._token = token.access_token
            self._token_expires_at = time.monotonic() + max(lifetime_s, 0.0)
            self.tokens_fetched += 1
            return self._token

    async def _send(self, method: str, url: URL, **kwargs) -> Answer:
        try:
            async with self.session().request(method, url, **kwargs) as response:
                body = await response.content.read(RESPONSE_BYTES_MAX + 1)
                if len(body) > RESPONSE_BYTES_MAX:
                    raise PspTransientError(f"paypal: {method} {url.path}: answer larger than {RESPONSE_BYTES_MAX} bytes")
                return Answer(response.status, body)
        except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise PspTransientError(f"paypal: {method} {url.path}: {type(exc).__name__} {exc}") from exc


def decode(answer: Answer, type_):
    """The answer's body as `type_`; an unreadable answer leaves the outcome unknown."""
    try:
        return msgspec.json.decode(answer.body, type=type_)
    except msgspec.DecodeError as exc:
        raise PspTransientError(f"paypal: unreadable {type_.__name__} (HTTP {answer.status}): {exc}") from exc


def rejected(what: str, answer: Answer) -> PspRejected:
    err = answer.error()
    issues = ",".join(err.issues())
    return PspRejected(f"paypal: {what}: HTTP {answer.status} {err.label()}{f' [{issues}]' if issues else ''}: {err.message}")
