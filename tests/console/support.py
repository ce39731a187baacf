"""Helpers of the console's tests: signing in over HTTP, and the CSRF token a page carries."""
from __future__ import annotations

import datetime
import re
import uuid

from paycell.store import payments

SCRIPT = "<script>alert(1)</script>"

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


async def script_payment(pool, user_id: str) -> str:
    """A payment of `user_id` whose `from_acct` holds SCRIPT, written below the API (which refuses
    such an account): what another path or an old row could hold. It stays in `requested`, its
    lease and deadline a day away (no sweeper in the suite picks it up). Returns its id."""
    payment_id = str(uuid.uuid4())
    p = payments.NewPayment(payment_id=payment_id, payment_order_id=str(uuid.uuid4()), user_id=user_id,
                            kind="payin", payment_option="card", from_acct=SCRIPT, to_acct=f"wallet:{user_id}",
                            amount_minor=1_00, currency="USD", created_at=datetime.datetime.now(datetime.timezone.utc))
    async with pool.acquire() as conn:
        assert await payments.accept(conn, p, request_sha256=b"xss", response_status=202, response_body=b"{}",
                                     lock_s=0, lease_s=86_400, deadline_s=86_400)
    return payment_id


_FORM = re.compile(r'<form[^>]*id="reversal-form".*?</form>', re.S)
_INPUT = re.compile(r'<input[^>]*\bname="(\w+)"[^>]*\bvalue="([^"]*)"')


def reversal_form(html: str) -> dict[str, str] | None:
    """The fields a payment page's reversal form would post as rendered (None: no form offered)."""
    found = _FORM.search(html)
    if found is None:
        return None
    return {**dict(_INPUT.findall(found[0])), "reason": ""}
