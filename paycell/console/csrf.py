"""CSRF tokens: every console form carries one as the hidden field `csrf`, and every POST is
refused (403 csrf_rejected, before its handler runs, so nothing changes) unless it carries the
right one, compared in constant time.

- Signed in: the token is HMAC-SHA256 keyed by the session's secret (which only the HttpOnly
  cookie holds), so it is fixed for the session and unknowable without the cookie.
- The sign-in form itself (no session yet): a double-submit token. GET /console/sign-in sets a
  random value in a short-lived HttpOnly, SameSite=Strict cookie and in the form; the POST must
  carry both, equal. Another site can neither read the cookie nor make the browser send it, so it
  cannot sign an operator in as someone else (login CSRF).
"""
from __future__ import annotations

import hashlib
import hmac
import secrets

from paycell.errors import CsrfRejected

FIELD = "csrf"
SIGN_IN_COOKIE = "paycell_console_signin"
SIGN_IN_COOKIE_S = 900
_PURPOSE = b"paycell console csrf v1"


def session_token(session_secret: str) -> str:
    return hmac.new(session_secret.encode(), _PURPOSE, hashlib.sha256).hexdigest()


def new_sign_in_token() -> str:
    return secrets.token_urlsafe(32)


def check(expected: str | None, given: object) -> None:
    """CsrfRejected unless `given` is the non-empty `expected` token."""
    if not expected or not isinstance(given, str) or not given:
        raise CsrfRejected("this form is missing its CSRF token: reload the page and try again")
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise CsrfRejected("this form's CSRF token is not this session's: reload the page and try again")
