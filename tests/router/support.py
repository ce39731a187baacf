"""Requests the router's tests make through the API (no tests here)."""
from __future__ import annotations

import uuid

from tests.api.support import INSTRUMENTS, PAYMENTS, call, get_as, post_payment
from tests.helpers import auth_header, payment_body, wait_until


async def attach_on(api, settings, user: str, token: str, option: str, *connectors: str) -> None:
    """Attach `token` for `option` on each of `connectors`."""
    for connector in connectors:
        reply = await call(api, "POST", INSTRUMENTS, headers=auth_header(settings, user),
                           json={"token": token, "payment_option": option, "connector": connector})
        assert reply.status in (200, 201), reply.json


async def pay_in(api, settings, user: str, token: str, *, option: str = "card", currency: str = "USD",
                 amount: str = "10.00") -> str:
    """A pay-in from `token` into the user's wallet, accepted; returns the payment id."""
    body = payment_body(user, token, f"wallet:{user}", amount, option, currency=currency,
                        payment_id=str(uuid.uuid4()))
    reply = await post_payment(api, settings, user, body)
    assert reply.status == 202, reply.json
    return body["payment_id"]


async def pay_out(api, settings, user: str, token: str, *, option: str = "card", currency: str = "USD",
                  amount: str = "10.00") -> str:
    body = payment_body(user, f"wallet:{user}", token, amount, option, currency=currency,
                        payment_id=str(uuid.uuid4()))
    reply = await post_payment(api, settings, user, body)
    assert reply.status == 202, reply.json
    return body["payment_id"]


async def payment(api, settings, user: str, payment_id: str) -> dict:
    reply = await get_as(api, settings, user, f"{PAYMENTS}/{payment_id}")
    assert reply.status == 200, reply.json
    return reply.json


async def finished(api, settings, user: str, payment_id: str, *, timeout_s: float = 30) -> dict:
    """The payment once it left `processing` (asserts it did within `timeout_s`)."""
    async def done():
        found = await payment(api, settings, user, payment_id)
        return found if found["status"] != "processing" else None
    found = await wait_until(done, timeout_s=timeout_s, interval_s=0.1)
    assert found, await payment(api, settings, user, payment_id)
    return found


def attempts(view: dict) -> list[tuple[str, str]]:
    """(connector, reason) of each attempt of the payment's order, in order."""
    (order,) = view["orders"]
    return [(a["connector"], a["reason"]) for a in order["psp_attempts"]]
