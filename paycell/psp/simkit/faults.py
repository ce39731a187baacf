"""Faults a test injects through `POST /_sim/faults` and clears with `DELETE /_sim/faults`.

They apply to the provider's own routes, never to `/_sim/...`:
    outage            every request answers 503 and nothing happens
    error_rate        this share of requests (0..1) answers 503 before anything happens
    latency_ms        every answer waits this long first
    timeout           requests hang (nothing happens) until the client gives up
    drop_after_charge the next N requests that reach the provider's handler are DONE (a charge is
                      made) and then the connection is closed without an answer: the lost response
"""
from __future__ import annotations

import asyncio
import random
from typing import Annotated

import msgspec
from aiohttp import web

TIMEOUT_HANG_S = 600.0


class Faults(msgspec.Struct, forbid_unknown_fields=True):
    outage: bool = False
    error_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.0  # a probability, not money
    latency_ms: Annotated[int, msgspec.Meta(ge=0, le=60_000)] = 0
    timeout: bool = False
    drop_after_charge: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 0

    def active(self) -> bool:
        return self != Faults()


def middleware(get_faults, rng: random.Random, hanging: set[asyncio.Task]):
    """An aiohttp middleware applying the app's current faults to every non-`/_sim` route.
    Requests hung by `timeout` are kept in `hanging`, so that stopping the app can end them."""

    @web.middleware
    async def apply_faults(request: web.Request, handler):
        if "/_sim/" in request.path:
            return await handler(request)
        faults: Faults = get_faults()
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        if faults.timeout:
            task = asyncio.current_task()
            hanging.add(task)
            try:
                await asyncio.sleep(TIMEOUT_HANG_S)
            finally:
                hanging.discard(task)
        if faults.outage or (faults.error_rate and rng.random() < faults.error_rate):
            return web.json_response({"error": "service_unavailable", "message": "simulated fault"}, status=503)
        response = await handler(request)
        if faults.drop_after_charge and request.method == "POST" and request.transport is not None:
            faults.drop_after_charge -= 1
            request.transport.close()  # the work is done; the client never hears of it
        return response

    return apply_faults
