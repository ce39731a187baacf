"""The simulators' shared kit: deliveries signed at each attempt, faults, and a stopping simulator
that ends the requests its `timeout` fault holds."""
from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from aiohttp import web

from paycell.psp.simkit import SimKit


async def test_a_retried_delivery_is_signed_again_at_each_attempt(aiohttp_server):
    seen: list[str] = []

    async def receiver(request: web.Request) -> web.Response:
        seen.append(request.headers["X-Sig"])
        return web.Response(status=500 if len(seen) == 1 else 200)

    app = web.Application()
    app.router.add_post("/hook", receiver)
    server = await aiohttp_server(app)
    kit = SimKit("t", webhook_url=str(server.make_url("/hook")))
    signed = iter(range(100))
    kit.outbox.send("evt_1", "x", lambda: {"X-Sig": str(next(signed))}, b"{}")

    async def delivered():
        while not (kit.outbox.log and kit.outbox.log[0].delivered):
            await asyncio.sleep(0.02)

    await asyncio.wait_for(delivered(), 10)
    assert seen == ["0", "1"]  # two attempts, two signatures
    await kit.outbox.close()


async def test_held_deliveries_go_out_newest_first_when_flushed(aiohttp_server):
    seen: list[str] = []

    async def receiver(request: web.Request) -> web.Response:
        seen.append((await request.read()).decode())
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", receiver)
    server = await aiohttp_server(app)
    kit = SimKit("t", webhook_url=str(server.make_url("/hook")))
    kit.outbox.config.out_of_order = True
    for n in range(3):
        kit.outbox.send(f"evt_{n}", "x", {}, str(n).encode())
    assert seen == [] and kit.outbox.flush() == 3
    while len(seen) < 3:
        await asyncio.sleep(0.02)
    assert sorted(seen) == ["0", "1", "2"] and seen[0] == "2"
    await kit.outbox.close()


async def test_outage_refuses_and_timeout_hangs_until_the_simulator_stops(aiohttp_server):
    kit = SimKit("t")
    calls = []

    async def charge(request: web.Request) -> web.Response:
        calls.append(1)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/charge", charge)
    kit.mount(app)
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as http:
        async with http.post(server.make_url("/_sim/faults"), json={"outage": True}) as r:
            assert r.status == 200
        async with http.post(server.make_url("/charge")) as r:
            assert r.status == 503
        assert calls == []  # an outage does nothing
        async with http.post(server.make_url("/_sim/faults"), json={"timeout": True}) as r:
            assert r.status == 200
        hung = asyncio.ensure_future(http.post(server.make_url("/charge")))
        while not kit.hanging:
            await asyncio.sleep(0.02)
        started = time.monotonic()
        await server.close()
        with pytest.raises(aiohttp.ClientError):
            await asyncio.wait_for(hung, 10)
        assert time.monotonic() - started < 10 and calls == []
