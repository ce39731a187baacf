"""Rate limits and velocity on payment creation: the edge against card testing (issue 6 item 8).

Every web process admits a payment only after three checks against Redis, so the limits hold for
the whole fleet, not per process:
- the user's payments in the last minute (`rate_user_payments_per_minute`),
- the instrument's payments in the last minute (`rate_instrument_payments_per_minute`),
- the instrument's PSP declines in the last `instrument_decline_window_s`: at
  `instrument_declines_max` it is blocked until the oldest of those declines leaves the window, or
  an operator clears it.
The windows are moving windows of the `limits` library: each check is one of its Lua scripts (one
atomic command), and the three are pipelined, so admission costs one Redis round trip (a
transfer, which names no instrument, sends one script); a 429 costs one more, to tell the client
when to retry. A refused request has written nothing to Postgres.

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
            socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S)
        self._storage = RedisStorage("async+redis://", implementation="redispy", key_prefix=KEY_PREFIX,
                                     wrap_exceptions=True, connection_pool=self._connections)
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._client = redis.asyncio.Redis(connection_pool=self._connections)
        self._acquire = _Script(self._client, self._storage.bridge.SCRIPT_ACQUIRE_MOVING_WINDOW)
        self._window = _Script(self._client, self._storage.bridge.SCRIPT_MOVING_WINDOW)
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
        """The library's moving-window scripts for this request, pipelined: one round trip. Each
        call is what `MovingWindowRateLimiter.hit` and `RedisStorage.get_moving_window` send, on
        the same keys, so the library's own calls (the 429's window stats) read what these wrote."""
        now_s, key = time.time(), self._storage.bridge.prefixed_key
        for attempt in (1, 2):
            async with self._client.pipeline(transaction=False) as pipe:
                self._acquire_in(pipe, key(self.user_limit.key_for(user_id)), self.user_limit, now_s)
                if instrument is not None:
                    self._acquire_in(pipe, key(self.instrument_limit.key_for(instrument)), self.instrument_limit,
                                     now_s)
                    pipe.evalsha(self._window.sha, 1, key(DECLINES_KEY.format(instrument=instrument)),
                                 now_s - self._settings.instrument_decline_window_s,
                                 self._settings.instrument_declines_max)
                try:
                    return await pipe.execute()
                except redis.exceptions.NoScriptError:
                    if attempt == 2:
                        raise
                    # Redis restarted or its scripts were flushed: load them (a no-op when loaded).
                    await self._acquire.script_load()
                    await self._window.script_load()
        raise AssertionError("unreachable")

    def _acquire_in(self, pipe, key: str, item, now_s: float) -> None:
        pipe.evalsha(self._acquire.sha, 1, key, now_s, item.amount, item.get_expiry(), 1)

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


class _Script:
    """A script sent by its SHA inside a pipeline. redis-py's own Script objects ask SCRIPT EXISTS
    before every pipeline that holds one, a second round trip: here NOSCRIPT triggers the load."""

    def __init__(self, client: redis.asyncio.Redis, text: str | bytes):
        self._client, self._text = client, text
        self.sha = hashlib.sha1(text.encode() if isinstance(text, str) else text).hexdigest()

    async def script_load(self) -> None:
        await self._client.script_load(self._text)


def _seconds_until(at_s: float) -> int:
    return max(1, math.ceil(at_s - time.time()))
