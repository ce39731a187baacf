"""A connector differs from its simulator only by configuration: here the simulators are served
over HTTPS with the test CA's certificate, and the connectors reach them with
PAYCELL_TLS_CA_FILE and (for the pins) PAYCELL_PSP_TLS_PINS, exactly as they would reach their
providers. A pinned key that is not the server's refuses the call before the simulator sees it,
and the connector's breaker counts it as a technical failure."""
from __future__ import annotations

import datetime
import os
import ssl
import uuid

import aiohttp
import pytest
from structlog.testing import capture_logs

from paycell.config import load
from paycell.psp import registry
from paycell.psp.base import Charge, PspTransientError
from paycell.psp.breakers import Breakers
from paycell.psp.simulator import create_sim_app
from paycell.reconcile import fetch
from paycell.tls import client as tls_client
from tests.psp.conformance import all_drivers
from tests.tls.conftest import leaf_cert, serve_https
from tests.tls.test_outbound import pin_of


def https_settings(url: str, ca_file: str, **env: str):
    """The test environment (its connectors' secrets too) with every simulator URL moved to `url`."""
    plain = os.environ["PAYCELL_PSP_SIM_URL"]
    moved = {k: v.replace(plain, url) for k, v in os.environ.items() if k.startswith("PAYCELL_") and plain in v}
    return load(os.environ | moved | {"PAYCELL_TLS_CA_FILE": ca_file} | env)


def charge(instrument: str, option: str = "card") -> Charge:
    return Charge(idempotency_key=str(uuid.uuid4()), direction="payin", amount_minor=12_30, currency="USD",
                  instrument=instrument, payment_option=option, customer_ref="tls-user")


async def submits_seen(url: str, ca_file: str, key: str) -> int:
    async with tls_client.session(tls_client.context(ca_file)) as http:
        async with http.get(f"{url}/v1/stats/{key}") as response:
            return (await response.json())["submits"]


# Every connector, with a token its simulator pays in from at once (tests/psp/drivers).
CONNECTORS = [("test", "card", "tok_card_ok"), *((d.connector, d.option, d.payin_ok) for d in all_drivers())]


@pytest.mark.parametrize("connector, option, instrument", CONNECTORS, ids=[c[0] for c in CONNECTORS])
async def test_every_connector_pays_through_its_simulator_over_https_and_refuses_an_unpinned_key(
        ca, ca_file, tmp_path, settings, connector, option, instrument):
    leaf = leaf_cert(ca)
    async with serve_https(leaf, tmp_path, app=create_sim_app(slow_s=1, settle_s=0.1, settings=settings)) as served:
        adapter = registry.adapter_for(connector, https_settings(served.url(), ca_file))
        try:
            result = await adapter.submit(charge(instrument, option))
        finally:
            await adapter.close()
        # The provider's answer: paid now, or waiting for the customer (PayPal) or the rail (ACH).
        assert result.status in ("succeeded", "requires_action", "pending") and result.psp_reference, result
        pinned = https_settings(served.url(), ca_file, PAYCELL_PSP_TLS_PINS=f"{connector}:{pin_of(leaf_cert(ca))}")
        adapter = registry.adapter_for(connector, pinned)
        try:
            with capture_logs() as logs, pytest.raises(PspTransientError):
                await adapter.submit(charge(instrument, option))
        finally:
            await adapter.close()
    assert [e["connector"] for e in logs if e["event"] == "tls.pin_mismatch"] == [connector]


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


@pytest.mark.parametrize("connector", ["stripe", "adyen"])
async def test_settlement_reports_come_over_verified_https_under_the_connectors_pins(ca, ca_file, tmp_path, settings,
                                                                                   connector):
    leaf = leaf_cert(ca)
    today = datetime.datetime.now(datetime.timezone.utc).date()
    async with serve_https(leaf, tmp_path, app=create_sim_app(slow_s=1, settle_s=0.1, settings=settings)) as served:
        report = await fetch.download(https_settings(served.url(), ca_file), connector, today, tmp_path)
        assert report.stat().st_size > 0
        pinned = https_settings(served.url(), ca_file, PAYCELL_PSP_TLS_PINS=f"{connector}:{pin_of(leaf_cert(ca))}")
        with pytest.raises(fetch.ReportUnavailable, match="PinMismatch.*is pinned to"):
            await fetch.download(pinned, connector, today, tmp_path)
        with pytest.raises(fetch.ReportUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            await fetch.download(https_settings(served.url(), ""), connector, today, tmp_path)
