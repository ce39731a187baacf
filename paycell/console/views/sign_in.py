"""Signing in and out (paycell/console/session.py says how a session works)."""
from __future__ import annotations

import structlog
from aiohttp import web

from paycell.console import csrf, session
from paycell.console.pages import redirect, render
from paycell.console.state import AUTHENTICATOR, OPERATOR
from paycell.errors import Forbidden, Unauthenticated
from paycell.http.state import POOL, SETTINGS

log = structlog.get_logger("paycell.console")
TOKEN_CHARS_MAX = 8_192


def routes() -> list[web.RouteDef]:
    return [
        web.get("/sign-in", sign_in_form, name="console.sign_in"),
        web.post("/sign-in", sign_in, name="console.sign_in_post"),
        web.post("/sign-out", sign_out, name="console.sign_out"),
    ]


def _form(request: web.Request, *, error: str | None = None, status: int = 200) -> web.Response:
    """The sign-in form with a fresh double-submit token in the form and in its cookie."""
    token = csrf.new_sign_in_token()
    response = render(request, "sign_in.html", {"sign_in_csrf": token, "error": error}, status=status)
    session.set_cookie(response, request.config_dict[SETTINGS], csrf.SIGN_IN_COOKIE, token, csrf.SIGN_IN_COOKIE_S)
    return response


async def sign_in_form(request: web.Request) -> web.Response:
    return _form(request)


async def sign_in(request: web.Request) -> web.StreamResponse:
    """The form's token (CSRF-checked already) verified as the API verifies one; a session on success."""
    token = (await request.post()).get("token")
    if not isinstance(token, str) or not token.strip() or len(token) > TOKEN_CHARS_MAX:
        return _form(request, error="Paste an operator token (paycell token --operator USER_ID).", status=400)
    settings = request.config_dict[SETTINGS]
    try:
        opened, max_age_s = await session.sign_in(request.config_dict[POOL], settings,
                                                  request.config_dict[AUTHENTICATOR], token)
    except (Unauthenticated, Forbidden) as exc:
        log.warning("console.sign_in_refused", code=exc.code, reason=exc.message)
        return _form(request, error=f"Not signed in: {exc.message}.", status=exc.http_status)
    log.info("console.signed_in", operator=opened.user_id)
    response = redirect("/console/")
    session.set_cookie(response, settings, session.COOKIE, session.cookie_value(opened), max_age_s)
    session.clear_cookie(response, settings, csrf.SIGN_IN_COOKIE)
    return response


async def sign_out(request: web.Request) -> web.StreamResponse:
    found = session.parse_cookie(request.cookies.get(session.COOKIE))
    if found is not None:
        await session.sign_out(request.config_dict[POOL], found)
    log.info("console.signed_out", operator=request[OPERATOR])
    response = redirect("/console/sign-in")
    session.clear_cookie(response, request.config_dict[SETTINGS], session.COOKIE)
    return response
