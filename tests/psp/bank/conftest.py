"""The bank connector against its simulator, both over real HTTP: the simulator app on a real
local server per test (its clock, payment orders and faults start fresh), a second server that
receives its webhooks, and an adapter pointed at the first."""
from __future__ import annotations

import asyncio
import datetime
import uuid
from dataclasses import dataclass, field

import aiohttp
import msgspec
import pytest
from aiohttp import web

from paycell.psp import registry
from paycell.psp.bank import calendar, rail
from paycell.psp.bank.simulator import create_app
from paycell.psp.base import Charge
from tests.helpers import assert_ledger_clean, wait_until

OK = rail.external_account_id(rail.SUCCESS_ACCOUNT)


@dataclass
class Received:
    """The webhook deliveries a receiver got: (headers, raw body)."""

    deliveries: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def events(self) -> list[str]:
        return [msgspec.json.decode(body)["event"] for _, body in self.deliveries]


@dataclass
class Bank:
    url: str  # the simulator's base address (what PAYCELL_BANK_API_BASE_URL would hold)
    http: aiohttp.ClientSession
    received: Received

    async def sim(self, method: str, path: str, payload: object | None = None) -> object:
        async with self.http.request(method, f"{self.url}/_sim/{path}", json=payload) as resp:
            assert resp.status == 200, (resp.status, await resp.text())
            return await resp.json()

    async def now_s(self) -> float:
        return (await self.sim("GET", "clock"))["now_s"]

    async def advance_to(self, t_s: float) -> None:
        """Move the simulator's clock to `t_s` (seconds since the epoch, simulated time)."""
        await self.sim("POST", "clock", {"advance_s": max(0.0, t_s - await self.now_s())})

    async def advance_to_next(self, weekday: int, time_utc: datetime.time) -> float:
        """Move the clock to the next `weekday` (0 Monday) at `time_utc`; returns that instant."""
        now = datetime.datetime.fromtimestamp(await self.now_s(), calendar.UTC)
        day = now.date() + datetime.timedelta(days=1)
        while day.weekday() != weekday:
            day += datetime.timedelta(days=1)
        target_s = datetime.datetime.combine(day, time_utc, tzinfo=calendar.UTC).timestamp()
        await self.advance_to(target_s)
        return target_s

    async def charges(self) -> list[dict]:
        return await self.sim("GET", "charges")

    async def wait_for_events(self, count: int) -> list[str]:
        async def enough():
            return len(self.received.deliveries) >= count
        await wait_until(enough, timeout_s=10)
        await asyncio.sleep(0.05)  # a delivery beyond `count` would show up now
        return self.received.events()


def charge(direction: str = "payin", *, account: str = rail.SUCCESS_ACCOUNT, amount_minor: int = 12_34,
           key: str | None = None, currency: str = "USD", reference: str | None = None) -> Charge:
    return Charge(idempotency_key=key or str(uuid.uuid4()), direction=direction, amount_minor=amount_minor,
                  currency=currency, instrument=rail.external_account_id(account), payment_option="bank_account",
                  psp_reference=reference, customer_ref="user-bank-test")


@pytest.fixture
async def bank(aiohttp_server, settings):
    received = Received()

    async def receive(request: web.Request) -> web.Response:
        received.deliveries.append((dict(request.headers), await request.read()))
        return web.json_response({"received": True})

    receiver = web.Application()
    receiver.router.add_post("/psp/webhooks/bank", receive)
    receiver_server = await aiohttp_server(receiver)
    sim_server = await aiohttp_server(create_app(settings))
    url = str(sim_server.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as http:
        b = Bank(url=url, http=http, received=received)
        await b.sim("POST", "webhooks", {"url": str(receiver_server.make_url("/psp/webhooks/bank"))})
        yield b


@pytest.fixture
async def psp(bank, settings):
    adapter = registry.adapter_for("bank", msgspec.structs.replace(settings, bank_api_base_url=bank.url))
    yield adapter
    await adapter.close()


@pytest.fixture(autouse=True)
async def ledger_stays_clean(pool):
    """Every test here ends with the ledger's invariants checked."""
    yield
    await assert_ledger_clean(pool)
