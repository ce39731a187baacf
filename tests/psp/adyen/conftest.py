"""The Adyen simulator as a real server on a free port, the connector pointed at it, and a real
webhook receiver that checks every delivery with the connector (as paycell's inbox will)."""
from __future__ import annotations

import asyncio
import datetime

import aiohttp
import msgspec
import pytest
from aiohttp import web

from paycell.psp.adyen.connector import AdyenPsp
from paycell.psp.adyen.simulator import create_app
from paycell.psp.base import WebhookEvent, WebhookRejected


class Receiver:
    """Collects the events of every delivery the simulator makes, verified by the connector."""

    def __init__(self) -> None:
        self.psp: AdyenPsp | None = None
        self.events: list[WebhookEvent] = []
        self.rejected: list[str] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        try:
            events = await self.psp.verify_webhook(request.headers, await request.read())
        except WebhookRejected as exc:
            self.rejected.append(str(exc))
            return web.Response(status=401, text="rejected")
        self.events.extend(events)
        status, content_type, body = self.psp.webhook_response()
        return web.Response(status=status, body=body, content_type=content_type)

    async def wait_for(self, type_: str, order_id: str, *, count: int = 1, timeout_s: float = 10) -> list[WebhookEvent]:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            found = [e for e in self.events if e.type == type_ and e.order_id == order_id]
            if len(found) >= count or asyncio.get_running_loop().time() > deadline:
                return found
            await asyncio.sleep(0.02)


class Sim:
    """The simulator's /_sim control routes."""

    def __init__(self, url: str, http: aiohttp.ClientSession, receiver: Receiver) -> None:
        self.url = url
        self.http = http
        self.receiver = receiver

    async def call(self, method: str, path: str, json: object = None, *, expect: int = 200):
        async with self.http.request(method, self.url + path, json=json) as response:
            assert response.status == expect, (response.status, await response.text())
            return await (response.json() if response.content_type == "application/json" else response.text())

    async def reset(self) -> None:
        await self.call("POST", "/_sim/reset")
        await self.call("POST", "/_sim/webhooks", {"url": self.receiver.url})
        self.receiver.events.clear()
        self.receiver.rejected.clear()

    async def charges(self) -> list[dict]:
        return await self.call("GET", "/_sim/charges")

    async def faults(self, **faults) -> None:
        await self.call("POST", "/_sim/faults", faults)

    async def advance(self, seconds: float) -> None:
        await self.call("POST", "/_sim/clock", {"advance_s": seconds})

    async def report(self, day: datetime.date) -> str:
        return await self.call("GET", f"/_sim/reports?date={day.isoformat()}")


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    # A request hanging in the `timeout` fault must not hold the teardown for a minute.
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


@pytest.fixture(scope="module")
async def servers(settings):
    receiver = Receiver()
    receiver_app = web.Application()
    receiver_app.router.add_post("/psp/webhooks/adyen", receiver.handle)
    receiver_runner, receiver_base = await _serve(receiver_app)
    receiver.url = f"{receiver_base}/psp/webhooks/adyen"
    # Served under /adyen as `paycell psp-sim` serves it.
    root = web.Application()
    root.add_subapp("/adyen", create_app(settings))
    sim_runner, sim_base = await _serve(root)
    async with aiohttp.ClientSession() as http:
        yield Sim(f"{sim_base}/adyen", http, receiver), receiver
    await sim_runner.cleanup()
    await receiver_runner.cleanup()


@pytest.fixture(scope="module")
def adyen_settings(settings, servers):
    sim, _ = servers
    return msgspec.structs.replace(settings, adyen_checkout_base_url=f"{sim.url}/checkout/v71",
                                   adyen_payout_base_url=f"{sim.url}/pal/servlet/Payout/v68")


@pytest.fixture
async def sim(servers):
    sim, _ = servers
    await sim.reset()
    return sim


@pytest.fixture
async def psp(adyen_settings, servers, sim):
    _, receiver = servers
    adapter = AdyenPsp(adyen_settings)
    receiver.psp = AdyenPsp(adyen_settings)
    yield adapter
    await adapter.close()
    await receiver.psp.close()


@pytest.fixture
def receiver(servers) -> Receiver:
    return servers[1]
