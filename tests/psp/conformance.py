"""What the connector conformance suite (test_conformance.py) does through paycell's API and a
provider's simulator: attach on a connector, pay, act as the customer, move the simulator's clock,
inject faults, and read the simulator's own record of charges. No tests here."""
from __future__ import annotations

import asyncio
import importlib
import pkgutil

import aiohttp

from tests.helpers import auth_header, payment_body
from tests.psp import drivers
from tests.psp.drivers.base import Driver


def all_drivers() -> list[Driver]:
    """Every connector's driver (tests/psp/drivers/<connector>.py defines DRIVER)."""
    found = []
    for info in pkgutil.iter_modules(drivers.__path__):
        if info.name != "base":
            found.append(importlib.import_module(f"{drivers.__name__}.{info.name}").DRIVER)
    return sorted(found, key=lambda d: d.connector)


class Sim:
    """One provider simulator under `paycell psp-sim` (the session's psp_sim fixture)."""

    def __init__(self, sim_url: str, driver: Driver) -> None:
        self.base = f"{sim_url}{driver.sim_prefix}"
        self.http = aiohttp.ClientSession()

    async def _call(self, method: str, path: str, json: object = None) -> object:
        async with self.http.request(method, f"{self.base}{path}", json=json) as resp:
            assert resp.status == 200, (path, resp.status, await resp.text())
            return await resp.json()

    async def charges_for(self, order_id: str) -> list[dict]:
        """The simulator's record of payments made under paycell's order id."""
        return [c for c in await self._call("GET", "/_sim/charges") if c["order_key"] == order_id]

    async def refunds_for(self, order_id: str) -> list[dict]:
        """The simulator's record of refunds (pay-out recalls) made of paycell's order."""
        return [r for r in await self._call("GET", "/_sim/refunds") if r["order_key"] == order_id]

    async def faults(self, **faults) -> None:
        await self._call("POST", "/_sim/faults", faults)

    async def clear_faults(self) -> None:
        await self._call("DELETE", "/_sim/faults")

    async def advance(self, seconds: float) -> None:
        await self._call("POST", "/_sim/clock", {"advance_s": seconds})

    async def webhooks(self, **config) -> None:
        await self._call("POST", "/_sim/webhooks", config)

    async def flush_webhooks(self) -> int:
        return (await self._call("POST", "/_sim/webhooks/flush"))["flushed"]

    async def deliveries(self) -> list[dict]:
        return (await self._call("GET", "/_sim/webhooks"))["deliveries"]

    async def close(self) -> None:
        await self.http.close()


async def attach_on(api, settings, user: str, connector: str, option: str, token: str) -> dict:
    resp = await api.post("/payments/instrument/v1", headers=auth_header(settings, user),
                          json={"token": token, "payment_option": option, "connector": connector})
    body = await resp.json()
    assert resp.status in (200, 201), (resp.status, body)
    return body


async def pay_via(api, settings, driver: Driver, user: str, *, kind: str, option: str, token: str, amount: str,
                  wait_s: int = 10) -> tuple[int, dict]:
    """Attach `token` on the driver's connector and POST a pay-in from it or a pay-out to it."""
    await attach_on(api, settings, user, driver.connector, option, token)
    src, dst = (token, f"wallet:{user}") if kind == "payin" else (f"wallet:{user}", token)
    headers = auth_header(settings, user) | {"Prefer": f"wait={wait_s}"}
    resp = await api.post("/payments/payment/v1", headers=headers,
                          json=payment_body(user, src, dst, amount, option, currency=driver.currency))
    return resp.status, await resp.json()


def minor(amount: str, exponent: int = 2) -> int:
    whole, _, frac = amount.partition(".")
    return int(whole) * 10**exponent + int((frac + "0" * exponent)[:exponent] or 0)


async def payment_of(api, settings, user: str, payment_id: str) -> dict:
    resp = await api.get(f"/payments/payment/v1/{payment_id}", headers=auth_header(settings, user))
    assert resp.status == 200, resp.status
    return await resp.json()


async def order_state(pool, payment_id: str) -> str | None:
    async with pool.acquire() as conn:
        return await conn.fetchval("SELECT payment_order_status FROM payment_order WHERE payment_id = $1::uuid",
                                   payment_id)


async def drive(api, settings, pool, sim: Sim, driver: Driver, user: str, payment_id: str, *,
                timeout_s: float = 45) -> dict:
    """Take a payment to its end as its provider's world would: the customer approves when asked
    (driver.approve), the rail's clock runs past settlement while the charge is pending
    (driver.settle_after_s); returns the payment once it is neither processing nor waiting."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    approved = advanced = False
    while asyncio.get_running_loop().time() < deadline:
        payment = await payment_of(api, settings, user, payment_id)
        if payment["status"] not in ("processing", "requires_action"):
            return payment
        if payment["status"] == "requires_action" and not approved and driver.approve is not None:
            async with aiohttp.ClientSession() as customer:
                await driver.approve(customer, payment["next_action"]["url"])
            approved = True
        elif (payment["status"] == "processing" and not advanced and driver.settle_after_s
              and await order_state(pool, payment_id) == "psp_pending"):
            await sim.advance(driver.settle_after_s)
            advanced = True
        await asyncio.sleep(0.1)
    raise AssertionError(f"payment {payment_id} did not end within {timeout_s} s: {payment}")


async def reverse(api, settings, user: str, payment_id: str, amount: str, currency: str, *,
                  sim: Sim | None = None, settle_after_s: float = 0.0, pool=None) -> dict:
    """An operator's reversal of `amount` of the payment, through the API; the reversal once it
    ended. A reversal its provider answers `pending` (an ACH credit) ends once the simulator's clock
    passes `settle_after_s` and the sweeper sends `reverse` again (its lease ran out): the sweeper
    is run here as the scheduler would."""
    from paycell.actors.broker import build_broker
    from paycell.sweeper import sweep_once
    from tests.helpers import operator_header

    broker = build_broker(settings) if settle_after_s else None
    advanced = False

    path = f"/payments/payment/v1/{payment_id}/reversals"
    resp = await api.post(path, json={"user_id": user, "amount": amount, "currency": currency, "reason": "conformance"},
                          headers=operator_header(settings) | {"Idempotency-Key": f"conf-{payment_id}-{amount}"})
    body = await resp.json()
    assert resp.status == 201, (resp.status, body)
    deadline = asyncio.get_running_loop().time() + 30
    while asyncio.get_running_loop().time() < deadline:
        resp = await api.get(path, params={"user_id": user}, headers=operator_header(settings))
        found = next(r for r in (await resp.json())["data"] if r["reversal_id"] == body["reversal_id"])
        if found["status"] in ("succeeded", "failed", "needs_attention"):
            return found
        if settle_after_s and found["status"] == "psp_submitting" and found["psp_reference"]:
            if not advanced:
                await sim.advance(settle_after_s)
                advanced = True
            await sweep_once(pool, broker, settings)
            await asyncio.sleep(0.5)
        await asyncio.sleep(0.1)
    raise AssertionError(f"reversal {body['reversal_id']} did not end: {found}")
