"""Helpers of the console's tests: signing in over HTTP, and the CSRF token a page carries."""
from __future__ import annotations

import re
import uuid

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def operator_id(prefix: str = "ops") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "the page carries no CSRF token"
    return found[1]


async def sign_in(web, token: str):
    """Sign in through the form as a browser does (its double-submit token first); returns the
    sign-in answer (303 with the session cookie on success). The client keeps the cookies."""
    form = await web.get("/console/sign-in")
    csrf = csrf_of(await form.text())
    return await web.post("/console/sign-in", data={"csrf": csrf, "token": token}, allow_redirects=False)


async def page_csrf(web, path: str = "/console/") -> str:
    resp = await web.get(path)
    assert resp.status == 200, resp.status
    return csrf_of(await resp.text())
