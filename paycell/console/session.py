"""Operators' sign-in sessions.

Signing in takes an operator-role token (`paycell token --operator`, or one from the identity
provider) and verifies it with the API's own Authenticator: the same algorithms, issuer, audience,
lifetime and role checks as a bearer token. It opens a session: a random 256-bit secret in the
cookie, only its SHA-256 in Postgres (console_session), so the table alone opens nothing. The
cookie value is `<user_id>:<secret>`: the operator's id leads the row's key (Citus), so finding a
session is one primary-key probe. A session ends after PAYCELL_CONSOLE_SESSION_S, never after the
token it was opened with, or at sign-out; a role removed from the operator's tokens takes effect
at their next sign-in (at most one session's length).

The cookie: HttpOnly (no script can read it), SameSite=Strict (no other site's page can make the
browser send it), Path=/console, Secure unless PAYCELL_ENV=development (a browser then sends it
over https only).
"""
from __future__ import annotations

import datetime
import hashlib
import re
import secrets

import jwt
import msgspec
from aiohttp import web

from paycell.config import Settings
from paycell.errors import Forbidden
from paycell.http.auth import OPERATOR as OPERATOR_ROLE
from paycell.http.auth import Authenticator
from paycell.refs import USER_ID
from paycell.store import console_sessions as store

COOKIE = "paycell_console"
PATH = "/console"
_SECRET = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)


class Session(msgspec.Struct, frozen=True):
    user_id: str
    secret: str


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def secure_cookies(settings: Settings) -> bool:
    return settings.env != "development"


def set_cookie(response: web.StreamResponse, settings: Settings, name: str, value: str, max_age_s: int) -> None:
    response.set_cookie(name, value, max_age=max_age_s, path=PATH, httponly=True, samesite="Strict",
                        secure=secure_cookies(settings))


def clear_cookie(response: web.StreamResponse, settings: Settings, name: str) -> None:
    response.del_cookie(name, path=PATH, httponly=True, samesite="Strict", secure=secure_cookies(settings))


def parse_cookie(value: str | None) -> Session | None:
    """The session a cookie names, when it is well-formed (whether it is live is the store's answer)."""
    if not value:
        return None
    user_id, _, secret = value.rpartition(":")
    if not USER_ID.fullmatch(user_id) or not _SECRET.fullmatch(secret):
        return None
    return Session(user_id, secret)


async def sign_in(pool, settings: Settings, authenticator: Authenticator, token: str) -> tuple[Session, int]:
    """Verify `token` as the API does (Unauthenticated when it is not valid; Forbidden without the
    operator role) and open a session; returns it and its lifetime in seconds."""
    user_id, roles = await authenticator.authenticate(f"Bearer {token.strip()}")
    if OPERATOR_ROLE not in roles:
        raise Forbidden("this token lacks the operator role: the console is for operators")
    # The token passed every check above; its `exp` bounds the session.
    token_exp = jwt.decode(token.strip(), options={"verify_signature": False})["exp"]
    now = datetime.datetime.now(datetime.timezone.utc)
    expires_at = min(now + datetime.timedelta(seconds=settings.console_session_s),
                     datetime.datetime.fromtimestamp(token_exp, datetime.timezone.utc))
    session = Session(user_id, secrets.token_urlsafe(32))
    async with pool.acquire() as conn:
        await store.insert(conn, user_id, _hash(session.secret), expires_at=expires_at)
    return session, max(1, int((expires_at - now).total_seconds()))


async def live(pool, session: Session) -> bool:
    async with pool.acquire() as conn:
        return await store.live(conn, session.user_id, _hash(session.secret)) is not None


async def sign_out(pool, session: Session) -> None:
    async with pool.acquire() as conn:
        await store.end(conn, session.user_id, _hash(session.secret))


def cookie_value(session: Session) -> str:
    return f"{session.user_id}:{session.secret}"
