"""The console's door: a live session for every page but sign-in and the stylesheet, and the
CSRF token on every POST (paycell/console/session.py and csrf.py say how each works)."""
from __future__ import annotations

import structlog
from aiohttp import web

from paycell.console import csrf, session
from paycell.console.state import CSRF_TOKEN, OPERATOR
from paycell.errors import Unauthenticated
from paycell.http.state import POOL

SIGN_IN_PATH = "/console/sign-in"
OPEN_ROUTES = frozenset({"console.sign_in", "console.sign_in_post", "console.static", "console.not_found"})
SIGN_IN_ROUTES = frozenset({"console.sign_in_post"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # change nothing: no token asked (none ever in a URL)


@web.middleware
async def require_session(request: web.Request, handler) -> web.StreamResponse:
    """Pages need a live session: a GET without one is sent to sign in, a POST is refused (401)."""
    if request.match_info.route.name in OPEN_ROUTES:
        return await handler(request)
    found = session.parse_cookie(request.cookies.get(session.COOKIE))
    if found is None or not await session.live(request.config_dict[POOL], found):
        if request.method == "GET":
            raise web.HTTPSeeOther(SIGN_IN_PATH)
        raise Unauthenticated("sign in first: this session is over or was never opened")
    request[OPERATOR] = found.user_id
    request[CSRF_TOKEN] = csrf.session_token(found.secret)
    with structlog.contextvars.bound_contextvars(operator=found.user_id):  # every line of the request names them
        return await handler(request)


@web.middleware
async def require_csrf_token(request: web.Request, handler) -> web.StreamResponse:
    """Every POST (any unsafe method) carries its form's CSRF token, checked before the handler
    does anything."""
    if request.method in SAFE_METHODS:
        return await handler(request)
    form = await request.post()
    if request.match_info.route.name in SIGN_IN_ROUTES:
        expected = request.cookies.get(csrf.SIGN_IN_COOKIE)
    else:
        expected = request.get(CSRF_TOKEN)
    csrf.check(expected, form.get(csrf.FIELD))
    return await handler(request)
