"""What the API test modules share beyond tests/helpers.py: a JSON-checking request, the error
shape, and row counts. The client is conftest's `api` fixture. No tests here."""
from __future__ import annotations

import contextlib
import dataclasses

import msgspec
from aiohttp import web
from multidict import CIMultiDict

from tests.helpers import attach, auth_header, new_user, payment_body

PAYMENTS = "/payments/payment/v1"
INSTRUMENTS = "/payments/instrument/v1"
WALLET = "/payments/wallet/v1"


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    headers: CIMultiDict[str]
    json: object


async def call(api, method: str, path: str, *, headers: dict[str, str] | None = None, json: object = None,
               data: bytes | None = None) -> Reply:
    """One request; every answer must be JSON, whatever its status."""
    if json is not None:
        data = msgspec.json.encode(json)
        headers = {"Content-Type": "application/json", **(headers or {})}
    async with api.request(method, path, headers=headers, data=data) as resp:
        assert resp.content_type == "application/json", (resp.status, resp.content_type)
        return Reply(resp.status, CIMultiDict(resp.headers), msgspec.json.decode(await resp.read()))


async def post_payment(api, settings, user: str, body: dict, *, prefer: str | None = None) -> Reply:
    headers = auth_header(settings, user) | ({"Prefer": prefer} if prefer else {})
    return await call(api, "POST", PAYMENTS, headers=headers, json=body)


async def get_as(api, settings, user: str, path: str) -> Reply:
    return await call(api, "GET", path, headers=auth_header(settings, user))


def payin(user: str, *, payment_id: str | None = None, amount: str = "12.30") -> dict:
    """A valid card pay-in of `amount` USD into `user`'s wallet."""
    return payment_body(user, "tok_card_ok", f"wallet:{user}", amount, "card", payment_id=payment_id)


async def payer(api, settings, prefix: str = "user", token: str = "tok_card_ok") -> str:
    """A new user who has attached `token` (so that `payin(user)` is accepted)."""
    user = new_user(prefix)
    await attach(api, settings, user, token)
    return user


def error_of(reply: Reply) -> tuple[int, str]:
    """(status, code) of an error reply, after checking its shape."""
    assert isinstance(reply.json, dict) and set(reply.json) == {"error"}, reply.json
    error = reply.json["error"]
    assert {"code", "message"} <= set(error) <= {"code", "message", "field", "problems"}, error
    assert "problems" not in error or error["code"] in ("rules_invalid", "rules_syntax"), error
    assert isinstance(error["message"], str) and error["message"], error
    return reply.status, error["code"]


async def rows_for(pool, user: str) -> tuple[int, int, int]:
    """(payment requests, payment orders, idempotency keys) stored for `user`."""
    row = await pool.fetchrow(
        """SELECT (SELECT count(*) FROM payment_request WHERE user_id = $1) AS requests,
                  (SELECT count(*) FROM payment_order WHERE user_id = $1) AS orders,
                  (SELECT count(*) FROM idempotency_key WHERE user_id = $1) AS keys""", user)
    return row["requests"], row["orders"], row["keys"]


@contextlib.asynccontextmanager
async def served(settings):
    """The app behind a real aiohttp runner on a free port, with the server options `paycell web`
    uses (unlike the test client's server); yields the port."""
    from paycell.http.app import create_app
    from paycell.http.edge import server_options

    runner = web.AppRunner(create_app(settings), **server_options(settings))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()
