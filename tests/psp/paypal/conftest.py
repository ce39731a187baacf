"""The PayPal simulator as a real HTTP server on a port of its own (fresh per module), a webhook
receiver it delivers to, and a connector pointed at it."""
from __future__ import annotations

import asyncio
import socket
import uuid

import aiohttp
import msgspec
import pytest
from aiohttp import web

from paycell.psp.base import Charge
from paycell.psp.paypal.connector import PaypalPsp
from paycell.psp.paypal.simulator import WORLD, create_app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """Collects webhook deliveries (headers, raw body) as paycell's endpoint would receive them."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.deliveries.append((dict(request.headers), await request.read()))
        self.arrived.set()
        return web.json_response({})

    async def wait_for(self, event_type: str, timeout_s: float = 5.0) -> tuple[dict[str, str], bytes]:
        async def find():
            while True:
                for headers, body in self.deliveries:
                    if msgspec.json.decode(body)["event_type"] == event_type:
                        return headers, body
                self.arrived.clear()
                await self.arrived.wait()
        return await asyncio.wait_for(find(), timeout_s)


class PaypalSim:
    def __init__(self, url: str, app: web.Application, http: aiohttp.ClientSession, receiver: Receiver) -> None:
        self.url = url
        self.app = app
        self.http = http
        self.receiver = receiver

    @property
    def world(self):
        return self.app[WORLD]

    async def call(self, method: str, path: str, **kwargs) -> tuple[int, object]:
        async with self.http.request(method, self.url + path, **kwargs) as response:
            return response.status, await response.json(content_type=None)

    async def charges(self) -> list[dict]:
        return (await self.call("GET", "/_sim/charges"))[1]

    async def faults(self, **faults) -> None:
        status, _ = await self.call("POST", "/_sim/faults", json=faults)
        assert status == 200

    async def advance(self, seconds: float) -> None:
        status, _ = await self.call("POST", "/_sim/clock", json={"advance_s": seconds})
        assert status == 200


@pytest.fixture(scope="module")
async def sim_settings(settings):
    port = _free_port()
    return msgspec.structs.replace(settings, paypal_api_base_url=f"http://127.0.0.1:{port}", psp_timeout_s=2.0)


@pytest.fixture(scope="module")
async def paypal_sim(sim_settings):
    receiver = Receiver()
    hook_app = web.Application()
    hook_app.router.add_post("/psp/webhooks/paypal", receiver.handle)
    hook_runner = web.AppRunner(hook_app)
    await hook_runner.setup()
    hook_site = web.TCPSite(hook_runner, "127.0.0.1", 0)
    await hook_site.start()
    hook_port = hook_runner.addresses[0][1]

    app = create_app(sim_settings)
    runner = web.AppRunner(app, shutdown_timeout=1.0)  # a `timeout` fault leaves handlers hanging
    await runner.setup()
    port = int(sim_settings.paypal_api_base_url.rsplit(":", 1)[1])
    await web.TCPSite(runner, "127.0.0.1", port).start()
    async with aiohttp.ClientSession() as http:
        sim = PaypalSim(sim_settings.paypal_api_base_url, app, http, receiver)
        sim.hook_url = f"http://127.0.0.1:{hook_port}/psp/webhooks/paypal"
        yield sim
    await runner.cleanup()
    await hook_runner.cleanup()


@pytest.fixture
async def sim(paypal_sim):
    status, _ = await paypal_sim.call("POST", "/_sim/reset")
    assert status == 200
    status, _ = await paypal_sim.call("POST", "/_sim/webhooks", json={"url": paypal_sim.hook_url})
    assert status == 200
    paypal_sim.receiver.deliveries.clear()
    return paypal_sim


@pytest.fixture
async def psp(sim, sim_settings):
    adapter = PaypalPsp(sim_settings)
    yield adapter
    await adapter.close()


def payin(instrument: str = "buyer@example.com", amount_minor: int = 1230, currency: str = "USD") -> Charge:
    return Charge(idempotency_key=str(uuid.uuid4()), direction="payin", amount_minor=amount_minor, currency=currency,
                  instrument=instrument, payment_option="paypal")


def payout(instrument: str = "payee@example.com", amount_minor: int = 2500, currency: str = "USD") -> Charge:
    return Charge(idempotency_key=str(uuid.uuid4()), direction="payout", amount_minor=amount_minor, currency=currency,
                  instrument=instrument, payment_option="paypal")
