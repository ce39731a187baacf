"""The identity provider's public keys (a JWKS URL), looked up by `kid` without blocking the loop.

PyJWT's PyJWKClient fetches the key set (urllib, no redirects, `jwks_timeout_s`), parses it
(keys it cannot use are skipped) and caches it for `jwks_cache_s`. It is synchronous, so it runs
on one thread of its own, and the event loop keeps the last key set it brought back:

- a known `kid` in a fresh set costs no thread hop;
- an unknown `kid` refetches the set at most once per `jwks_refresh_s_min` (a rotated key is
  picked up); between refetches it is refused on the loop, so a flood of made-up key ids neither
  reaches the provider nor queues on the thread;
- one lookup at a time goes to the thread; the others wait for it, then read what it brought;
- when the provider cannot be reached (or sends no usable set), the last set it sent keeps
  verifying tokens, the provider is asked again at most once per `jwks_refresh_s_min`, and a
  `kid` that set lacks is a 503 (retry), not a 401 (the token may well be good).
"""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import jwt
import structlog

from paycell.config import Settings
from paycell.errors import IdentityProviderUnavailable, Unauthenticated
from paycell.tls import client as tls_client

log = structlog.get_logger("paycell.http.jwks")
NEVER = float("-inf")


class JwksKeys:
    def __init__(self, settings: Settings):
        self.url = settings.jwks_url
        self.algorithms = frozenset(settings.jwks_algorithms)
        self.cache_s = settings.jwks_cache_s
        self.refresh_s_min = settings.jwks_refresh_s_min
        # PyJWKClient's own refresh-on-unknown-kid is not used (get_signing_key): the loop decides.
        self._client = jwt.PyJWKClient(settings.jwks_url, cache_jwk_set=True, lifespan=settings.jwks_cache_s,
                                       timeout=settings.jwks_timeout_s,
                                       ssl_context=tls_client.context(settings.tls_ca_file,
                                                                      crl_file=settings.tls_crl_file))
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = NEVER    # monotonic time the provider last sent a usable set
        self._tried_at = NEVER      # ... of the last lookup that went to the thread
        self._refreshed_at = NEVER  # ... of the last forced refetch (unknown kid)
        self._reachable = True      # did the last lookup reach the provider
        self._lock = asyncio.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jwks")
        self.lookups = 0            # lookups that went to the thread (tests and logs)

    async def key(self, kid: object) -> jwt.PyJWK:
        """The signing key `kid` names, for one of the accepted algorithms; Unauthenticated
        otherwise; IdentityProviderUnavailable when only the unreachable provider could say."""
        if not isinstance(kid, str) or not kid:
            raise Unauthenticated("the token names no key (`kid`)")
        key = self._known(kid)
        if key is None:
            async with self._lock:
                key = self._known(kid) or await self._look_up(kid)
        if key.algorithm_name not in self.algorithms:
            raise Unauthenticated("the token's key is not for an accepted algorithm")
        return key

    def _known(self, kid: str) -> jwt.PyJWK | None:
        """The key from the set in hand; None when the provider must be asked; raises when it
        must not be asked again yet."""
        now = time.monotonic()
        key = self._keys.get(kid)
        if not self._reachable and now - self._tried_at < self.refresh_s_min:
            if key is not None:
                return key
            raise IdentityProviderUnavailable("the identity provider's keys cannot be fetched; retry shortly")
        if now - self._fetched_at < self.cache_s:
            if key is not None:
                return key
            if now - self._refreshed_at < self.refresh_s_min:
                raise Unauthenticated("the token's key id is unknown to the identity provider")
        return None

    async def _look_up(self, kid: str) -> jwt.PyJWK:
        now = self._tried_at = time.monotonic()
        may_refresh = now - self._refreshed_at >= self.refresh_s_min
        self.lookups += 1
        try:
            keys, refreshed = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._fetch_blocking, kid, may_refresh)
        except jwt.PyJWTError as exc:
            self._reachable = False
            log.warning("jwks.unavailable", url=self.url, error=str(exc)[:300])
            if kid in self._keys:  # the last set the provider sent still verifies
                return self._keys[kid]
            raise IdentityProviderUnavailable("the identity provider's keys cannot be fetched; retry shortly") from None
        self._keys, self._fetched_at, self._reachable = keys, time.monotonic(), True
        if refreshed:
            self._refreshed_at = now
        if kid not in keys:
            log.info("jwks.kid_unknown", kid=kid[:64])
            raise Unauthenticated("the token's key id is unknown to the identity provider")
        return keys[kid]

    def _fetch_blocking(self, kid: str, may_refresh: bool) -> tuple[dict[str, jwt.PyJWK], bool]:
        keys = self._signing_keys(self._client.get_jwk_set())
        if kid in keys or not may_refresh:
            return keys, False
        return self._signing_keys(self._client.get_jwk_set(refresh=True)), True

    @staticmethod
    def _signing_keys(jwk_set: jwt.PyJWKSet) -> dict[str, jwt.PyJWK]:
        return {k.key_id: k for k in jwk_set.keys if k.key_id and k.public_key_use in ("sig", None)}

    async def warm(self) -> None:
        """Fetch the set once at start-up so the first callers do not wait; an unreachable
        provider is logged, not fatal (the first token asks again)."""
        async with self._lock:
            try:
                keys, _ = await asyncio.get_running_loop().run_in_executor(
                    self._executor, self._fetch_blocking, "", False)
            except jwt.PyJWTError as exc:
                log.warning("jwks.warm_failed", url=self.url, error=str(exc)[:300])
                return
            self._keys, self._fetched_at = keys, time.monotonic()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
