"""A connector differs from its simulator only by configuration: here the simulators are served
over HTTPS with the test CA's certificate, and the connectors reach them with
PAYCELL_TLS_CA_FILE and (for the pins) PAYCELL_PSP_TLS_PINS, exactly as they would reach their
providers. A pinned key that is not the server's refuses the call before the simulator sees it,
and the connector's breaker counts it as a technical failure."""
from __future__ import annotations

import os
import ssl
import uuid

import aiohttp
import pytest

from paycell.config import load
from paycell.psp import registry
from paycell.psp.base import Charge, PspTransientError
from paycell.psp.breakers import Breakers
from paycell.psp.simulator import create_sim_app
from paycell.tls import client as tls_client
from tests.tls.conftest import leaf_cert, serve_https
from tests.tls.test_outbound import pin_of


def https_settings(url: str, ca_file: str, **env: str):
    """The test environment (its connectors' secrets too) with every simulator URL moved to `url`."""
    plain = os.environ["PAYCELL_PSP_SIM_URL"]
    moved = {k: v.replace(plain, url) for k, v in os.environ.items() if k.startswith("PAYCELL_") and plain in v}
    return load(os.environ | moved | {"PAYCELL_TLS_CA_FILE": ca_file} | env)


def charge(instrument: str) -> Charge:
    return Charge(idempotency_key=str(uuid.uuid4()), direction="payin", amount_minor=12_30, currency="USD",
                  instrument=instrument, customer_ref="tls-user")


async def submits_seen(url: str, ca_file: str, key: str) -> int:
    async with tls_client.session(tls_client.context(ca_file)) as http:
        async with http.get(f"{url}/v1/stats/{key}") as response:
            return (await response.json())["submits"]


@pytest.mark.parametrize("connector, instrument", [("test", "tok_card_ok"), ("stripe", "pm_card_visa")])
async def test_a_connector_pays_through_its_simulator_over_https(ca, ca_file, tmp_path, settings, connector,
                                                                 instrument):
    async with serve_https(leaf_cert(ca), tmp_path, app=create_sim_app(slow_s=1, settle_s=0.1,
                                                                       settings=settings)) as served:
        adapter = registry.adapter_for(connector, https_settings(served.url(), ca_file))
        try:
            result = await adapter.submit(charge(instrument))
        finally:
            await adapter.close()
    assert result.status == "succeeded" and result.psp_reference


async def test_a_connector_refuses_its_simulator_without_the_ca(ca, tmp_path, settings):
    async with serve_https(leaf_cert(ca), tmp_path, app=create_sim_app(slow_s=1, settle_s=0.1)) as served:
        adapter = registry.adapter_for("test", https_settings(served.url(), ""))
        try:
            with pytest.raises(PspTransientError, match="CERTIFICATE_VERIFY_FAILED"):
                await adapter.submit(charge("tok_card_ok"))
        finally:
            await adapter.close()


async def test_a_pin_mismatch_sends_nothing_and_counts_against_the_breaker(ca, ca_file, tmp_path, settings):
    leaf = leaf_cert(ca)
    name = f"tls_{uuid.uuid4().hex[:8]}"  # a breaker of its own (breaker state lives in Redis)
    async with serve_https(leaf, tmp_path, app=create_sim_app(slow_s=1, settle_s=0.1)) as served:
        wrong_pin, right_pin = pin_of(leaf_cert(ca)), pin_of(leaf)
        env = {"PAYCELL_PSP_TEST_CONNECTORS": f"{name}:{served.url()}", "PAYCELL_PSP_BREAKER_FAILURES_MAX": "2"}
        pinned = https_settings(served.url(), ca_file, **env, PAYCELL_PSP_TLS_PINS=f"{name}:{wrong_pin}")
        adapter, breakers = registry.adapter_for(name, pinned), Breakers(pinned)
        try:
            for _ in range(2):
                refused = charge("tok_card_ok")
                with pytest.raises(PspTransientError) as caught:
                    await breakers.call(name, lambda: adapter.submit(refused))
                assert isinstance(caught.value.__cause__, aiohttp.ClientConnectorCertificateError)
                assert isinstance(caught.value.__cause__.certificate_error, ssl.SSLCertVerificationError)
                assert await submits_seen(served.url(), ca_file, refused.idempotency_key) == 0
            assert await breakers.state(name) == "opened"
        finally:
            await adapter.close()
            await breakers.close()
        # The right pin (beside a backup) passes.
        rotated = https_settings(served.url(), ca_file, **env, PAYCELL_PSP_TLS_PINS=f"{name}:{wrong_pin}|{right_pin}")
        adapter = registry.adapter_for(name, rotated)
        try:
            assert (await adapter.submit(charge("tok_card_ok"))).status == "succeeded"
        finally:
            await adapter.close()
