"""The PSP simulator over real HTTP, driven through the SimulatedPsp adapter."""
from __future__ import annotations

import asyncio
import socket
import uuid

import aiohttp
import pytest
from aiohttp import web

from paycell.config.settings import load
from paycell.psp.base import Charge, PspRejected, PspTransientError
from paycell.psp.registry import OPTION_INSTRUMENT, UnknownPsp, adapter_for, instrument_kind
from paycell.psp.simulated import SimulatedPsp
from paycell.psp.simulator import create_sim_app
from paycell.psp.tokens import INSTRUMENTS

SLOW_S = 1.0
SETTLE_S = 0.2
TIMEOUT_S = 3.0


class Sim:
    """The simulator's test-only endpoints (stats, reset), which no adapter exposes."""

    def __init__(self, url: str, http: aiohttp.ClientSession) -> None:
        self.url = url
        self.http = http

    async def get(self, path: str) -> dict:
        async with self.http.get(self.url + path) as response:
            assert response.status == 200, response.status
            return await response.json()

    async def reset(self) -> None:
        async with self.http.post(self.url + "/v1/reset") as response:
            assert response.status == 200, response.status


@pytest.fixture(scope="module")
async def sim():
    runner = web.AppRunner(create_sim_app(slow_s=SLOW_S, settle_s=SETTLE_S))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    async with aiohttp.ClientSession() as http:
        yield Sim(f"http://{host}:{port}", http)
    await runner.cleanup()


@pytest.fixture
async def psp(sim):
    await sim.reset()
    adapter = SimulatedPsp(sim.url, timeout_s=TIMEOUT_S)
    yield adapter
    await adapter.close()


def charge(token: str, amount_minor: int = 12_30, key: str | None = None) -> Charge:
    return Charge(
        idempotency_key=key or str(uuid.uuid4()), direction="payin",
        amount_minor=amount_minor, currency="USD", instrument=token,
    )


async def test_ok_instrument_succeeds(psp):
    result = await psp.submit(charge("tok_card_ok"))
    assert result.status == "succeeded"
    assert result.psp_reference.startswith("ch_")
    assert result.decline_code is None


@pytest.mark.parametrize(("token", "decline_code"), [
    ("tok_card_decline", "card_declined"),
    ("tok_bank_nofunds", "insufficient_funds"),
    ("tok_paypal_nosuchbehaviour", "invalid_instrument"),
    ("not-a-token", "invalid_instrument"),
])
async def test_declines_carry_their_decline_code(psp, token, decline_code):
    c = charge(token)
    result = await psp.submit(c)
    assert (result.status, result.decline_code) == ("declined", decline_code)
    assert await psp.status(c) == result


async def test_flaky_psp_fails_twice_then_charges_once(psp, sim):
    c = charge("tok_googlepay_flaky")
    for _ in range(2):
        with pytest.raises(PspTransientError):
            await psp.submit(c)
        assert await psp.status(c) is None  # nothing charged: safe to send again
    assert (await psp.submit(c)).status == "succeeded"
    assert await sim.get(f"/v1/stats/{c.idempotency_key}") == {"submits": 3, "charged": True}
    assert (await sim.get("/v1/stats"))["charges"] == 1


async def test_down_psp_is_transient_and_charges_nothing(psp, sim):
    c = charge("tok_card_down")
    with pytest.raises(PspTransientError):
        await psp.submit(c)
    assert await psp.status(c) is None
    assert (await sim.get("/v1/stats"))["charges"] == 0


async def test_slow_answer_times_out_but_the_charge_exists(sim):
    impatient = SimulatedPsp(sim.url, timeout_s=SLOW_S / 2)
    c = charge("tok_applepay_slow")
    try:
        with pytest.raises(PspTransientError):
            await impatient.submit(c)
        assert (await impatient.status(c)).status == "succeeded"
    finally:
        await impatient.close()


async def test_dropped_response_is_transient_and_status_finds_the_one_charge(psp, sim):
    c = charge("tok_card_drop")
    with pytest.raises(PspTransientError):
        await psp.submit(c)
    found = await psp.status(c)
    assert found.status == "succeeded"
    assert await psp.submit(c) == found  # a resubmit replays the same charge
    assert (await sim.get("/v1/stats"))["charges"] == 1
    assert (await sim.get(f"/v1/stats/{c.idempotency_key}"))["charged"] is True


async def test_concurrent_identical_submits_charge_once(psp, sim):
    c = charge("tok_bank_ok")
    results = await asyncio.gather(*(psp.submit(c) for _ in range(20)))
    assert len(set(results)) == 1
    assert await sim.get("/v1/stats") == {"charges": 1, "paid": 1, "submits": 20}


async def test_same_key_with_another_amount_is_rejected(psp, sim):
    first = charge("tok_card_ok", amount_minor=100)
    await psp.submit(first)
    with pytest.raises(PspRejected):
        await psp.submit(charge("tok_card_ok", amount_minor=101, key=first.idempotency_key))
    assert (await sim.get("/v1/stats"))["charges"] == 1


async def test_a_401_from_the_status_call_is_an_unknown_outcome_not_a_refusal(psp, sim):
    c = charge("tok_bank_rotate")
    with pytest.raises(PspTransientError):
        await psp.submit(c)  # charged, answer dropped
    for _ in range(2):  # the API key is mid-rotation: says nothing about the charge
        with pytest.raises(PspTransientError, match="401"):
            await psp.status(c)
    assert (await psp.status(c)).status == "succeeded"


async def test_a_409_on_resubmit_is_an_unknown_outcome_not_a_refusal(psp, sim):
    c = charge("tok_bank_stale")
    with pytest.raises(PspTransientError):
        await psp.submit(c)
    assert await psp.status(c) is None  # a replica that has not seen it yet
    with pytest.raises(PspTransientError, match="409"):
        await psp.submit(c)
    assert (await psp.status(c)).status == "succeeded"
    assert (await sim.get(f"/v1/stats/{c.idempotency_key}")) == {"submits": 2, "charged": True}


async def test_a_request_the_psp_refuses_as_invalid_is_rejected_and_charges_nothing(psp, sim):
    c = charge("tok_card_reject")
    with pytest.raises(PspRejected):
        await psp.submit(c)
    assert await psp.status(c) is None


async def test_status_of_an_unknown_key_is_none(psp):
    assert await psp.status(charge("tok_card_ok")) is None


async def test_status_quotes_the_key(psp):
    c = charge("tok_card_ok", key="order/1?x=#y")
    result = await psp.submit(c)
    assert await psp.status(c) == result


async def test_pending_charge_settles_to_succeeded(psp):
    c = charge("tok_card_pending")
    assert (await psp.submit(c)).status == "pending"
    await asyncio.sleep(SETTLE_S * 1.5)
    assert (await psp.status(c)).status == "succeeded"


async def test_simulator_requires_an_idempotency_key(sim):
    body = {"direction": "payin", "amount_minor": 1, "currency": "USD", "instrument": "tok_card_ok"}
    async with sim.http.post(sim.url + "/v1/charges", json=body) as response:
        assert response.status == 400


async def test_unreachable_psp_is_transient():
    with socket.socket() as s:  # a port nobody listens on once this socket closes
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    adapter = SimulatedPsp(f"http://127.0.0.1:{port}", timeout_s=TIMEOUT_S)
    try:
        with pytest.raises(PspTransientError):
            await adapter.submit(charge("tok_card_ok"))
        with pytest.raises(PspTransientError):
            await adapter.status(charge("tok_card_ok"))
    finally:
        await adapter.close()


async def test_registry_builds_the_simulator_adapter():
    settings = load({})
    adapter = adapter_for("simulator", settings)  # the old name of `test`
    assert isinstance(adapter, SimulatedPsp) and adapter.name == "test"
    await adapter.close()
    with pytest.raises(UnknownPsp):
        adapter_for("nosuchpsp", settings)


@pytest.mark.parametrize(("token", "kind"), [
    ("tok_card_ok", "card"), ("tok_bank_decline", "bank"), ("tok_paypal_x1", "paypal"),
    ("tok_applepay_slow", "applepay"), ("tok_googlepay_ok", "googlepay"),
    ("tok_cash_ok", None), ("tok_card_", None), ("tok_card_OK", None), ("card_ok", None), ("", None),
])
def test_instrument_kind(token, kind):
    assert instrument_kind(token) == kind


def test_every_payment_option_maps_to_an_instrument():
    assert set(OPTION_INSTRUMENT.values()) == set(INSTRUMENTS)
