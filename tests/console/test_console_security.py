"""The console's door over real HTTP: sign-in, the session cookie, CSRF on every form, the
security headers and escaping. No worker runs here except where a test moves money."""
from __future__ import annotations

import hashlib
import uuid

import msgspec
from aiohttp import web as aioweb

from paycell.console import session
from paycell.console.headers import CSP
from paycell.http.app import create_app
from paycell.http.auth import OPERATOR, issue_token
from tests.console.support import SCRIPT, operator_id, page_csrf, script_payment, sign_in
from tests.helpers import assert_ledger_clean, auth_header, new_user

PAGES = ["/console/", "/console/payments", "/console/queues", "/console/reviews", "/console/schedules",
         "/console/reconciliation", "/console/breakers"]


async def test_every_page_asks_for_a_sign_in_first_and_a_bearer_token_is_no_session(web, console_settings):
    for path in PAGES:
        resp = await web.get(path, allow_redirects=False, headers=auth_header(console_settings, "ops-bearer"))
        assert resp.status == 303 and resp.headers["Location"] == "/console/sign-in", path
    form = await web.get("/console/sign-in")
    assert form.status == 200 and 'name="token"' in await form.text()
    bare = await web.get("/console", allow_redirects=False)
    assert bare.status == 308 and bare.headers["Location"] == "/console/"


async def test_an_operator_signs_in_with_an_operator_token_and_every_page_renders(web, operator_token, pool):
    operator = operator_id()
    resp = await sign_in(web, operator_token(operator))
    assert resp.status == 303 and resp.headers["Location"] == "/console/"
    cookie = resp.cookies[session.COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/console"
    assert not cookie["secure"]  # development: the test server speaks plain HTTP
    user_id, _, secret = cookie.value.rpartition(":")
    assert user_id == operator
    # Only the secret's hash is stored.
    stored = await pool.fetch("SELECT session_hash FROM console_session WHERE user_id = $1", operator)
    assert [r["session_hash"] for r in stored] == [hashlib.sha256(secret.encode()).digest()]
    for path in PAGES:
        page = await web.get(path)
        assert page.status == 200, (path, await page.text())
        assert operator in await page.text()


def test_the_session_cookie_is_secure_outside_development(console_settings):
    response = aioweb.Response()
    session.set_cookie(response, msgspec.structs.replace(console_settings, env="production"), session.COOKIE, "v", 60)
    cookie = response.cookies[session.COOKIE]
    assert cookie["secure"] and cookie["httponly"] and cookie["samesite"] == "Strict"


async def test_every_console_answer_carries_the_security_headers(web, operator_token):
    await sign_in(web, operator_token(operator_id()))
    for path in [*PAGES, "/console/sign-in", "/console/static/console.css", "/console/no-such-page",
                 f"/console/payments/ghost/{uuid.uuid4()}"]:
        resp = await web.get(path)
        assert resp.headers["Content-Security-Policy"] == CSP, path
        assert "script-src 'none'" in CSP and "frame-ancestors 'none'" in CSP and "default-src 'none'" in CSP
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        assert resp.headers["Cache-Control"] == "no-store"
    missing = await web.get(f"/console/payments/ghost/{uuid.uuid4()}")
    assert missing.status == 404 and "not_found" in await missing.text()


async def test_a_user_token_or_an_invalid_one_opens_no_session(web, console_settings, operator_token, pool):
    user = new_user()
    user_token = auth_header(console_settings, user)["Authorization"].removeprefix("Bearer ")
    refused = await sign_in(web, user_token)
    assert refused.status == 403 and "operator role" in await refused.text()
    invalid = await sign_in(web, operator_token(operator_id())[:-4] + "AAAA")  # signature broken
    assert invalid.status == 401
    assert session.COOKIE not in refused.cookies and session.COOKIE not in invalid.cookies
    assert await pool.fetchval("SELECT count(*) FROM console_session WHERE user_id = $1", user) == 0
    page = await web.get("/console/", allow_redirects=False)
    assert page.status == 303


async def test_sign_in_without_its_form_token_is_refused(web, operator_token, pool):
    operator = operator_id()
    await web.get("/console/sign-in")  # the double-submit cookie is set ...
    resp = await web.post("/console/sign-in", data={"token": operator_token(operator)}, allow_redirects=False)
    assert resp.status == 403 and "csrf_rejected" in await resp.text()  # ... but the form's copy is missing
    forged = await web.post("/console/sign-in", data={"token": operator_token(operator), "csrf": "x" * 43},
                            allow_redirects=False)
    assert forged.status == 403
    assert await pool.fetchval("SELECT count(*) FROM console_session WHERE user_id = $1", operator) == 0


async def test_a_post_without_the_sessions_csrf_token_is_refused_and_changes_nothing(web, operator_token, pool):
    operator = operator_id()
    await sign_in(web, operator_token(operator))
    good = await page_csrf(web)
    for data in ({}, {"csrf": ""}, {"csrf": good[:-1] + ("0" if good[-1] != "0" else "1")}):
        resp = await web.post("/console/sign-out", data=data, allow_redirects=False)
        assert resp.status == 403 and "csrf_rejected" in await resp.text(), data
        replay = await web.post("/console/dead-letters/1/replay", data=data, allow_redirects=False)
        assert replay.status == 403
    # Still signed in: the refused sign-out did nothing.
    assert (await web.get("/console/", allow_redirects=False)).status == 200
    assert await pool.fetchval("SELECT count(*) FROM console_session WHERE user_id = $1 AND ended_at IS NULL",
                               operator) == 1
    out = await web.post("/console/sign-out", data={"csrf": good}, allow_redirects=False)
    assert out.status == 303 and out.headers["Location"] == "/console/sign-in"
    assert (await web.get("/console/", allow_redirects=False)).status == 303


async def test_another_sessions_csrf_token_is_refused(web, aiohttp_client, console_settings, operator_token):
    await sign_in(web, operator_token(operator_id()))
    other = await aiohttp_client(create_app(console_settings))  # a second browser, its own cookies
    await sign_in(other, operator_token(operator_id()))
    theirs = await page_csrf(other)
    resp = await web.post("/console/sign-out", data={"csrf": theirs}, allow_redirects=False)
    assert resp.status == 403
    assert (await web.get("/console/", allow_redirects=False)).status == 200


async def test_a_session_ends_at_sign_out_or_expiry_even_with_the_old_cookie(web, operator_token, owner):
    operator = operator_id()
    resp = await sign_in(web, operator_token(operator))
    old = resp.cookies[session.COOKIE].value
    await web.post("/console/sign-out", data={"csrf": await page_csrf(web)})
    web.session.cookie_jar.update_cookies({session.COOKIE: old})
    assert (await web.get("/console/", allow_redirects=False)).status == 303
    await sign_in(web, operator_token(operator))
    assert (await web.get("/console/", allow_redirects=False)).status == 200
    await owner.execute("UPDATE console_session SET expires_at = created_at + interval '1 microsecond' "
                        "WHERE user_id = $1 AND ended_at IS NULL", operator)
    assert (await web.get("/console/", allow_redirects=False)).status == 303


async def test_a_session_never_outlives_the_token_that_opened_it(web, console_settings, pool):
    operator = operator_id()
    resp = await sign_in(web, issue_token(console_settings, operator, ttl_s=60, roles=(OPERATOR,)))
    assert resp.status == 303
    left_s = await pool.fetchval("SELECT extract(epoch FROM expires_at - now()) FROM console_session "
                                 "WHERE user_id = $1", operator)
    assert 0 < left_s <= 61 < console_settings.console_session_s
    assert 0 < int(resp.cookies[session.COOKIE]["max-age"]) <= 61


async def test_a_payment_field_holding_a_script_renders_as_text(web, operator_token, pool):
    """Defence in depth: the API refuses such accounts, yet a row holding one (another path, an
    old row) still shows as text, and so does an operator's note in the timeline."""
    await sign_in(web, operator_token(operator_id()))
    user = new_user("xss")
    payment_id = await script_payment(pool, user)
    await pool.execute("INSERT INTO event (user_id, payment_id, type, data) VALUES ($1, $2, 'order.note', $3)",
                       user, uuid.UUID(payment_id), {"note": SCRIPT, "by": '"><img src=x onerror=alert(1)>'})
    for path in (f"/console/payments/{user}/{payment_id}", f"/console/payments?q={user}"):
        html = await (await web.get(path)).text()
        assert SCRIPT not in html and "<img src=x" not in html, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
    await assert_ledger_clean(pool)
