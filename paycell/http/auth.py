"""Bearer JWT authentication: HS256 only, `exp` required, `sub` is the caller's user id."""
from __future__ import annotations

import time

import jwt
from aiohttp import web

from paycell.config import Settings
from paycell.errors import Unauthenticated
from paycell.http.state import CALLER
from paycell.refs import USER_ID

ALGORITHM = "HS256"
PUBLIC_ROUTES = frozenset({"health", "ready", "openapi"})  # route names served without a token


def issue_token(settings: Settings, user_id: str, ttl_s: int | None = None) -> str:
    """A signed token for `user_id`, valid for `ttl_s` (default settings.jwt_ttl_s)."""
    if not USER_ID.fullmatch(user_id):
        raise ValueError(f"not a valid user id: {user_id!r}")
    ttl_s = settings.jwt_ttl_s if ttl_s is None else ttl_s
    if ttl_s <= 0:
        raise ValueError(f"ttl_s must be positive, got {ttl_s}")
    now = int(time.time())
    return jwt.encode({"sub": user_id, "iat": now, "exp": now + ttl_s}, settings.jwt_secret, algorithm=ALGORITHM)


def authenticate(settings: Settings, authorization: str | None) -> str:
    """The user id an `Authorization: Bearer <jwt>` header proves; Unauthenticated otherwise."""
    if not authorization:
        raise Unauthenticated("missing Authorization: Bearer <token> header")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the Authorization header must be `Bearer <token>`")
    try:
        claims = jwt.decode(token.strip(), settings.jwt_secret, algorithms=[ALGORITHM],
                            options={"require": ["exp", "sub"]})
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("the token has expired") from None
    except jwt.InvalidTokenError:
        raise Unauthenticated("the token is not valid") from None
    sub = claims["sub"]
    if not isinstance(sub, str) or not USER_ID.fullmatch(sub):
        raise Unauthenticated("the token's subject is not a valid user id")
    return sub


def auth_middleware(settings: Settings):
    @web.middleware
    async def middleware(request: web.Request, handler) -> web.StreamResponse:
        route = request.match_info
        if route.http_exception is not None:  # no such route or method: say so, token or not
            raise route.http_exception
        if route.route.name not in PUBLIC_ROUTES:
            request[CALLER] = authenticate(settings, request.headers.get("Authorization"))
        return await handler(request)
    return middleware
