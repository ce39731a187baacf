"""Rate limits and velocity on payment creation: the edge against card testing (issue 6 item 8).

Every web process admits a payment only after three checks against Redis, so the limits hold for
the whole fleet, not per process:
- the user's payments in the last minute (`rate_user_payments_per_minute`),
- the instrument's payments in the last minute (`rate_instrument_payments_per_minute`),
- the instrument's PSP declines in the last `instrument_decline_window_s`: at
  `instrument_declines_max` it is blocked until the oldest of those declines leaves the window, or
  an operator clears it.
The windows are moving windows of the `limits` library. Admission sends its three checks as one
script (one EVALSHA, one round trip; a transfer, which names no instrument, runs only the user
check) whose parts are the library's own moving-window scripts, verbatim, as Lua functions: the
counting is the library's, and its own calls (a 429's window stats, the worker's decline record,
the operator's unblock) read and write the same keys. A 429 costs one more round trip, to tell
the client when to retry. A refused request has written nothing to Postgres.

Declines are recorded by the worker's charge step once the decline is committed (never inside the
PSP call), in a list keyed by the instrument alone so that the count does not depend on the
threshold a reader uses. An instrument is the token its PSP issued: with a real PSP one token
names one customer's card or account.

Redis holds only short-lived counters here: losing them forgets recent history, never money. When
Redis cannot be reached admission fails closed (503, retry): a payment admitted without its checks
could still be charged once Redis is back.
"""
from __future__ import annotations

import hashlib
import math
import time

import redis.asyncio
import redis.exceptions
from limits import RateLimitItemPerMinute
from limits.errors import StorageError
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from paycell.config import Settings
from paycell.errors import InstrumentBlocked, RateLimited
from paycell.tls import client as tls_client

KEY_PREFIX = "paycell-limits"
DECLINES_KEY = "declines/{instrument}"
REDIS_TIMEOUT_S = 2  # fail fast: a web request must not hang on an unreachable Redis
REDIS_CONNECTIONS_MAX = 64  # per process


def instrument_of(kind: str, from_acct: str, to_acct: str) -> tuple[str, str] | None:
    """(body field, token) of the external instrument a payment charges or pays: a pay-in's
    source, a pay-out's target; None for a transfer."""
    return {"payin": ("from_acct", from_acct), "payout": ("to_acct", to_acct)}.get(kind)


class LimiterUnavailable(ConnectionError):
    """Redis, which holds the limits, cannot be reached: answered 503 like an unreachable store."""


class Velocity:
    """The limits of one process; `admit` in web processes, `record_decline` in workers."""

    def __init__(self, settings: Settings):
        self._settings = settings
        # Our own bounded connection pool, handed to the library's storage: closing it is ours to do,
        # and a burst waits up to the timeout for a connection instead of opening one per request.
        self._connections = redis.asyncio.BlockingConnectionPool.from_url(
            settings.limiter_redis_url, max_connections=REDIS_CONNECTIONS_MAX, timeout=REDIS_TIMEOUT_S,
            socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S,
            **tls_client.redis_options(settings.limiter_redis_url, settings))
        self._storage = RedisStorage("async+redis://", implementation="redispy", key_prefix=KEY_PREFIX,
                                     wrap_exceptions=True, connection_pool=self._connections)
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._client = redis.asyncio.Redis(connection_pool=self._connections)
        self._admission = _Script(self._client, _admission_script(self._storage.bridge))
        self.user_limit = RateLimitItemPerMinute(settings.rate_user_payments_per_minute, namespace="payments-user")
        self.instrument_limit = RateLimitItemPerMinute(settings.rate_instrument_payments_per_minute,
                                                       namespace="payments-instrument")

    async def admit(self, user_id: str, instrument: str | None, *, field: str | None = None) -> None:
        """Count one payment request of `user_id` naming `instrument` (None for a transfer; `field`
        is where the body names it); raises RateLimited or InstrumentBlocked to refuse it."""
        try:
            user_ok, *rest = await self._check(user_id, instrument)
            if not user_ok:
                raise await self._refusal("user", self.user_limit, user_id)
            if instrument is not None:
                instrument_ok, window = rest
                oldest_s, declines = (float(window[0]), int(window[1])) if window else (time.time(), 0)
                if declines >= self._settings.instrument_declines_max:
                    retry_s = _seconds_until(oldest_s + self._settings.instrument_decline_window_s)
                    raise InstrumentBlocked(
                        f"this instrument was declined {declines} times in the last "
                        f"{self._settings.instrument_decline_window_s} s; use another, or retry in {retry_s} s",
                        field=field)
                if not instrument_ok:
                    raise await self._refusal("instrument", self.instrument_limit, instrument)
        except (StorageError, redis.exceptions.RedisError) as exc:
            raise LimiterUnavailable(f"rate-limit store unreachable: {exc}") from exc

    async def _check(self, user_id: str, instrument: str | None) -> list:
        """[user admitted, instrument admitted, (oldest decline, declines) or []] in one EVALSHA of
        the admission script (only the first for a transfer): what `MovingWindowRateLimiter.hit`
        and `RedisStorage.get_moving_window` would send, on the same keys, in one atomic command
        instead of three (measured: see bench/README.md)."""
        now_s, key = time.time(), self._storage.bridge.prefixed_key
        keys = [key(self.user_limit.key_for(user_id))]
        args = [now_s, self.user_limit.amount, self.user_limit.get_expiry()]
        if instrument is not None:
            keys += [key(self.instrument_limit.key_for(instrument)), key(DECLINES_KEY.format(instrument=instrument))]
            args += [self.instrument_limit.amount, self.instrument_limit.get_expiry(),
                     now_s - self._settings.instrument_decline_window_s, self._settings.instrument_declines_max]
        for attempt in (1, 2):
            try:
                return await self._client.evalsha(self._admission.sha, len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:
                if attempt == 2:
                    raise
                # Redis restarted or its scripts were flushed: load it (a no-op when loaded).
                await self._admission.script_load()
        raise AssertionError("unreachable")

    async def record_decline(self, instrument: str) -> None:
        """Count one PSP decline of `instrument` (the worker, after the decline is committed)."""
        await self._storage.acquire_entry(DECLINES_KEY.format(instrument=instrument),
                                          self._settings.instrument_declines_max,
                                          self._settings.instrument_decline_window_s)

    async def declines(self, instrument: str) -> int:
        """Declines of `instrument` within the window, up to `instrument_declines_max`."""
        return (await self._declines(instrument))[1]

    async def clear_declines(self, instrument: str) -> None:
        """Forget the instrument's declines (an operator unblocking it)."""
        await self._storage.clear(DECLINES_KEY.format(instrument=instrument))

    async def close(self) -> None:
        await self._connections.aclose()

    async def _declines(self, instrument: str) -> tuple[float, int]:
        return await self._storage.get_moving_window(DECLINES_KEY.format(instrument=instrument),
                                                     self._settings.instrument_declines_max,
                                                     self._settings.instrument_decline_window_s)

    async def _refusal(self, policy: str, item, identifier: str) -> RateLimited:
        stats = await self._limiter.get_window_stats(item, identifier)
        window_s = item.get_expiry()
        return RateLimited(f"more than {item.amount} payments per {window_s} s for this {policy}; "
                           f"retry after the Retry-After delay",
                           policy=policy, quota=item.amount, window_s=window_s,
                           retry_after_s=_seconds_until(stats.reset_time))


def _admission_script(bridge) -> str:
    """The library's moving-window scripts as two Lua functions (a function's KEYS and ARGV
    parameters stand for the script's globals, so their text runs unchanged) and admission's calls
    of them. Lua's false and nil would cut the reply short, so results come back as 1/0 and a
    possibly empty list. KEYS: the user's limit key, then for an instrument its limit key and its
    declines key; ARGV: now, user limit, user window, then instrument limit, instrument window,
    start of the decline window, declines max."""
    def text(script: str | bytes) -> str:
        return script.decode() if isinstance(script, bytes) else script
    return f"""
local function acquire(KEYS, ARGV)
{text(bridge.SCRIPT_ACQUIRE_MOVING_WINDOW)}
end
local function window(KEYS, ARGV)
{text(bridge.SCRIPT_MOVING_WINDOW)}
end
local admitted = {{acquire({{KEYS[1]}}, {{ARGV[1], ARGV[2], ARGV[3], 1}}) and 1 or 0}}
if #KEYS == 3 then
    admitted[2] = acquire({{KEYS[2]}}, {{ARGV[1], ARGV[4], ARGV[5], 1}}) and 1 or 0
    admitted[3] = window({{KEYS[3]}}, {{ARGV[6], ARGV[7]}}) or {{}}
end
return admitted
"""


class _Script:
    """A script sent by its SHA. redis-py's own Script objects ask SCRIPT EXISTS before every
    pipeline that holds one, a second round trip: here NOSCRIPT triggers the load."""

    def __init__(self, client: redis.asyncio.Redis, text: str | bytes):
        self._client, self._text = client, text
        self.sha = hashlib.sha1(text.encode() if isinstance(text, str) else text).hexdigest()

    async def script_load(self) -> None:
        await self._client.script_load(self._text)


def _seconds_until(at_s: float) -> int:
    return max(1, math.ceil(at_s - time.time()))
