"""Bearer JWT authentication: `sub` is the caller's user id.

Two verifiers, picked by the token's `alg` header and nothing else:

- HS256 with PAYCELL_JWT_SECRET (dev, internal callers, `paycell token`), `iss` = jwt_issuer;
- RS256 / ES256 / EdDSA (jwks_algorithms) with the identity provider's key named by `kid`,
  fetched from PAYCELL_JWKS_URL, `iss` = jwks_issuer.

Either may be off (unset), not both: the web refuses to start then. An `alg` whose verifier is
off, `none`, or any other algorithm is refused before any key is touched. An HS256 token signed
with the provider's public key (algorithm confusion) goes to the HS256 verifier, whose key is the
secret, and fails there; the JWKS verifier uses a key only with the algorithm the key is for.
Every token must carry `sub`, `iat`, `exp`, `iss` and `aud` (its verifier's audience); `iat` may
not be in the future beyond `jwt_leeway_s`, and `exp - iat` may not exceed `jwt_lifetime_s_max`.

Roles: a token may carry `roles`, a list of strings; only `operator` means anything today (the
operator API: risk rule sets and lists, the review queue). HS256 tokens get it from `paycell token
--operator`; an identity provider's tokens carry it in the claim PAYCELL_JWKS_ROLES_CLAIM names.
A route that needs a role calls `require_operator(request)`: a user's token gets 403 `forbidden`.
A `roles` claim that is not a list of strings makes the token invalid (401), never role-less.

Verified tokens are remembered (an LRU of `jwt_verified_cache_entries_max` token strings ->
subject and `exp`), because a client sends the same token on every call and the signature and
claim checks were most of the web's authentication cost. A remembered string is the very token
that passed every check, and of those checks only `exp` changes its answer as time passes (a
token not issued in the future now is not later): a hit is refused once `exp` + `jwt_leeway_s`
has passed, so no entry outlives its token. A token of the identity provider is remembered with
the key that verified it: on a hit the key set in hand must still hold that very key under that
`kid`, so a key the provider withdrew (or rotated) stops its tokens at the next fetch of the set,
exactly as before; HS256 tokens depend on the secret alone, fixed for the process's life. Only
verified tokens enter the LRU, so made-up tokens cannot evict real ones.
"""
from __future__ import annotations

import time
from collections.abc import AsyncIterator

import jwt
from aiohttp import web
from cachetools import LRUCache

from paycell.config import Settings, SettingsError
from paycell.errors import Forbidden, Unauthenticated
from paycell.http.jwks import JwksKeys
from paycell.http.state import CALLER, OWN_AUTH, ROLES
from paycell.refs import USER_ID

ALGORITHM = "HS256"
# Route names served without a token: a provider's webhook is signed in its own scheme instead, and
# the customer's return from the provider is a browser that carries none (it only hints a poll);
# `/console` only redirects to the operator console, which signs its users in itself.
PUBLIC_ROUTES = frozenset({"health", "ready", "openapi", "psp_webhook", "payment_return", "console_root"})
REQUIRED_CLAIMS = ["sub", "iat", "exp", "iss", "aud"]
OPERATOR = "operator"
ROLES_CLAIM = "roles"  # the claim of paycell's own (HS256) tokens
ROLES_MAX = 16
NO_ROLES: frozenset[str] = frozenset()


def issue_token(settings: Settings, user_id: str, ttl_s: int | None = None, *, roles: tuple[str, ...] = ()) -> str:
    """An HS256 token for `user_id`, valid for `ttl_s` (default settings.jwt_ttl_s), carrying `roles`."""
    if not settings.jwt_secret:
        raise ValueError("PAYCELL_JWT_SECRET is not set, so no token can be signed: export it (scripts/run keeps "
                         "one in .state/jwt_secret: export PAYCELL_JWT_SECRET=\"$(cat .state/jwt_secret)\")")
    if not USER_ID.fullmatch(user_id):
        raise ValueError(f"not a valid user id: {user_id!r}")
    ttl_s = settings.jwt_ttl_s if ttl_s is None else ttl_s
    if not 0 < ttl_s <= settings.jwt_lifetime_s_max:
        raise ValueError(f"ttl_s must be between 1 and PAYCELL_JWT_LIFETIME_S_MAX={settings.jwt_lifetime_s_max}, "
                         f"got {ttl_s}")
    now = int(time.time())
    claims = {"sub": user_id, "iat": now, "exp": now + ttl_s, "iss": settings.jwt_issuer,
              "aud": settings.jwt_audience}
    if roles:
        claims[ROLES_CLAIM] = list(roles)
    return jwt.encode(claims, settings.jwt_secret, algorithm=ALGORITHM)


class Authenticator:
    """Verifies bearer tokens as the module docstring says; built once per web app."""

    def __init__(self, settings: Settings):
        if not settings.jwt_secret and not settings.jwks_url:
            raise SettingsError(
                "the API cannot verify any token: set PAYCELL_JWT_SECRET (>= 256 random bits, e.g. the output "
                "of: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'; scripts/run makes one "
                "in .state/) and/or PAYCELL_JWKS_URL with PAYCELL_JWKS_ISSUER and PAYCELL_JWKS_AUDIENCE")
        self.settings = settings
        self.jwks = JwksKeys(settings) if settings.jwks_url else None
        # token -> (sub, exp, the JWKS key that verified it or None for HS256, roles); off when the size is 0.
        self._verified: LRUCache[str, tuple[str, float, jwt.PyJWK | None, frozenset[str]]] | None = (
            LRUCache(maxsize=settings.jwt_verified_cache_entries_max)
            if settings.jwt_verified_cache_entries_max > 0 else None)

    async def running(self, app: web.Application) -> AsyncIterator[None]:
        """A cleanup context: the provider's keys are fetched at start-up, its thread stopped at exit."""
        if self.jwks is not None:
            await self.jwks.warm()
        try:
            yield
        finally:
            if self.jwks is not None:
                self.jwks.close()

    async def authenticate(self, authorization: str | None) -> tuple[str, frozenset[str]]:
        """The user id and roles an `Authorization: Bearer <jwt>` header proves; Unauthenticated otherwise."""
        if not authorization:
            raise Unauthenticated("missing Authorization: Bearer <token> header")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("the Authorization header must be `Bearer <token>`")
        if self._verified is not None:
            known = self._verified.get(token)
            if known is not None:
                sub, exp, key, roles = known
                if time.time() >= exp + self.settings.jwt_leeway_s:  # as PyJWT: exp <= now - leeway
                    del self._verified[token]
                    raise Unauthenticated("the token has expired")
                if key is None or await self.jwks.key(key.key_id) is key:
                    return sub, roles
                del self._verified[token]  # the set in hand changed: verify against it again
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Unauthenticated("the token is not valid") from None
        alg = header.get("alg")
        s = self.settings
        if alg == ALGORITHM and s.jwt_secret:
            key = None
            claims = self._decode(token, s.jwt_secret, ALGORITHM, s.jwt_issuer, s.jwt_audience)
        elif self.jwks is not None and alg in s.jwks_algorithms:
            key = await self.jwks.key(header.get("kid"))
            claims = self._decode(token, key, alg, s.jwks_issuer, s.jwks_audience)
        else:
            raise Unauthenticated("the token's algorithm is not accepted")
        sub = self._subject(claims)
        roles = self._roles(claims, ROLES_CLAIM if key is None else s.jwks_roles_claim)
        if self._verified is not None:
            self._verified[token] = (sub, claims["exp"], key, roles)
        return sub, roles

    def _decode(self, token: str, key, alg: str, issuer: str, audience: str) -> dict:
        s = self.settings
        try:
            claims = jwt.decode(token, key, algorithms=[alg], issuer=issuer, audience=audience, leeway=s.jwt_leeway_s,
                                options={"require": REQUIRED_CLAIMS})
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("the token is not valid yet (iat or nbf in the future)") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"the token lacks the `{exc.claim}` claim") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated("the token's issuer (`iss`) is not accepted") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated("the token's audience (`aud`) is not this API") from None
        except jwt.InvalidTokenError:
            raise Unauthenticated("the token is not valid") from None
        exp, iat = claims["exp"], claims["iat"]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (exp, iat)):
            raise Unauthenticated("the token's `exp` and `iat` must be numbers")
        if exp - iat > s.jwt_lifetime_s_max:
            raise Unauthenticated(f"the token lives longer than {s.jwt_lifetime_s_max} s (exp - iat): "
                                  "ask for a shorter-lived one")
        return claims

    @staticmethod
    def _subject(claims: dict) -> str:
        sub = claims["sub"]
        if not isinstance(sub, str) or not USER_ID.fullmatch(sub):
            raise Unauthenticated("the token's subject is not a valid user id")
        return sub

    @staticmethod
    def _roles(claims: dict, claim: str) -> frozenset[str]:
        roles = claims.get(claim)
        if roles is None:
            return NO_ROLES
        if not isinstance(roles, list) or len(roles) > ROLES_MAX or not all(isinstance(r, str) for r in roles):
            raise Unauthenticated(f"the token's `{claim}` claim must be a list of at most {ROLES_MAX} strings")
        return frozenset(roles)


def require_operator(request: web.Request) -> str:
    """The caller's user id when its token carries the operator role; Forbidden (403) otherwise."""
    if OPERATOR not in request.get(ROLES, NO_ROLES):
        raise Forbidden("this route is for operators: the token lacks the operator role")
    return request[CALLER]


def auth_middleware(authenticator: Authenticator):
    @web.middleware
    async def middleware(request: web.Request, handler) -> web.StreamResponse:
        route = request.match_info
        if route.http_exception is not None:  # no such route or method: say so, token or not
            raise route.http_exception
        if route.route.name not in PUBLIC_ROUTES and not any(app.get(OWN_AUTH) for app in route.apps):
            request[CALLER], request[ROLES] = await authenticator.authenticate(request.headers.get("Authorization"))
        return await handler(request)
    return middleware
