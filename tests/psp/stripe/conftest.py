"""Fixtures for the Stripe connector's tests: its simulator (served by the session's `psp_sim`
process under /stripe, over real HTTP) and a webhook receiver the simulator delivers to."""
from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from paycell.psp.stripe import connector


class SimControl:
    """The Stripe simulator's `/_sim/...` routes, which no connector uses."""

    def __init__(self, url: str, http: aiohttp.ClientSession) -> None:
        self.url = url
        self.http = http

    async def call(self, method: str, path: str, payload: dict | None = None):
        async with self.http.request(method, self.url + path, json=payload) as response:
            assert response.status == 200, (response.status, await response.text())
            if response.content_type == "application/json":
                return await response.json()
            return await response.text()

    async def charges(self, order_id: str | None = None) -> list[dict]:
        charges = await self.call("GET", "/_sim/charges")
        return [c for c in charges if order_id is None or c["order_key"] == order_id]

    async def faults(self, **faults) -> None:
        await self.call("POST", "/_sim/faults", faults)

    async def advance_s(self, seconds: float) -> None:
        await self.call("POST", "/_sim/clock", {"advance_s": seconds})


class Receiver:
    """An HTTP endpoint that keeps every webhook delivery it gets (headers, raw body)."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self.arrived = asyncio.Condition()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        async with self.arrived:
            self.deliveries.append((dict(request.headers), body))
            self.arrived.notify_all()
        return web.json_response({"received": True})

    async def wait_for(self, predicate, timeout_s: float = 10.0):
        """The first delivery (headers, body) for which `predicate(body)` holds."""
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(
                lambda: any(predicate(body) for _, body in self.deliveries)), timeout_s)
            return next(d for d in self.deliveries if predicate(d[1]))


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def receiver():
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/psp/webhooks/stripe", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    receiver.url = f"http://{host}:{port}/psp/webhooks/stripe"
    yield receiver
    await runner.cleanup()


@pytest.fixture
async def sim(psp_sim, settings, http, receiver):
    """The simulator, reset, delivering its webhooks to `receiver`."""
    control = SimControl(settings.stripe_api_base_url, http)
    await control.call("POST", "/_sim/reset")
    await control.call("POST", "/_sim/webhooks", {"url": receiver.url})
    yield control
    await control.call("POST", "/_sim/reset")


@pytest.fixture
async def psp(settings, sim):
    adapter = connector.create(settings)
    yield adapter
    await adapter.close()
