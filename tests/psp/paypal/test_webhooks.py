"""PayPal webhooks: the simulator signs and delivers them as PayPal does; the connector verifies
them offline (certificate from an allow-listed host, fresh transmission, RSA-SHA256 over
transmission id | time | webhook id | crc32 of the body) and maps them to paycell's events."""
from __future__ import annotations

import base64
import datetime

import msgspec
import pytest

from paycell.psp.base import WebhookRejected
from paycell.psp.paypal.connector import PaypalPsp
from tests.psp.drivers.paypal import DRIVER
from tests.psp.paypal.conftest import payin, payout


async def _approve(sim, psp, instrument="buyer@example.com"):
    charge = payin(instrument)
    created = await psp.submit(charge)
    await DRIVER.approve(sim.http, created.action_url)
    return charge, created


async def test_approval_and_capture_webhooks_verify_and_map(sim, psp):
    charge, created = await _approve(sim, psp)
    headers, body = await sim.receiver.wait_for("CHECKOUT.ORDER.APPROVED")
    [approved] = await psp.verify_webhook(headers, body)
    assert (approved.kind, approved.order_id, approved.psp_reference) == ("approved", charge.idempotency_key,
                                                                            created.psp_reference)
    assert (approved.amount_minor, approved.currency) == (1230, "USD")

    await psp.status(charge)
    headers, body = await sim.receiver.wait_for("PAYMENT.CAPTURE.COMPLETED")
    [completed] = await psp.verify_webhook(headers, body)
    assert (completed.kind, completed.order_id, completed.result.status) == ("outcome", charge.idempotency_key,
                                                                             "succeeded")
    assert completed.psp_reference == created.psp_reference and completed.event_id.startswith("WH-")
    assert psp.webhooks.certs_fetched == 1  # cached for the second event
    assert psp.webhook_response()[0] == 200


async def test_a_reversal_after_success_is_a_return(sim, psp):
    charge, _ = await _approve(sim, psp, "capture-reversed@example.com")
    assert (await psp.status(charge)).status == "succeeded"
    await sim.advance(DRIVER.return_after_s)
    headers, body = await sim.receiver.wait_for("PAYMENT.CAPTURE.REVERSED")
    [event] = await psp.verify_webhook(headers, body)
    assert (event.kind, event.order_id, event.return_code, event.amount_minor) == (
        "returned", charge.idempotency_key, "paypal_reversed", 1230)
    [record] = await sim.charges()
    assert (record["status"], record["return_code"]) == ("returned", "paypal_reversed")


async def test_payout_item_webhooks_map_to_outcomes(sim, psp):
    charge = payout("payout-failed@example.com")
    await psp.submit(charge)
    headers, body = await sim.receiver.wait_for("PAYMENT.PAYOUTS-ITEM.FAILED")
    [event] = await psp.verify_webhook(headers, body)
    assert (event.kind, event.order_id, event.result.status, event.result.decline_code) == (
        "outcome", charge.idempotency_key, "declined", "receiver_account_locked")


async def _a_delivery(sim, psp):
    await _approve(sim, psp)
    return await sim.receiver.wait_for("CHECKOUT.ORDER.APPROVED")


async def test_a_forged_signature_is_rejected(sim, psp):
    headers, body = await _a_delivery(sim, psp)
    sig = bytearray(base64.b64decode(headers["PAYPAL-TRANSMISSION-SIG"]))
    sig[10] ^= 0x01
    with pytest.raises(WebhookRejected, match="does not verify"):
        await psp.verify_webhook({**headers, "PAYPAL-TRANSMISSION-SIG": base64.b64encode(bytes(sig)).decode()}, body)


async def test_a_tampered_body_is_rejected(sim, psp):
    headers, body = await _a_delivery(sim, psp)
    tampered = body.replace(b'"value":"12.30"', b'"value":"99.30"')
    assert tampered != body
    with pytest.raises(WebhookRejected, match="does not verify"):
        await psp.verify_webhook(headers, tampered)


async def test_an_event_signed_for_another_webhook_id_is_rejected(sim, sim_settings):
    other = PaypalPsp(msgspec.structs.replace(sim_settings, paypal_webhook_id="WH-SOMEONE-ELSE"))
    try:
        headers, body = await _a_delivery(sim, other)
        with pytest.raises(WebhookRejected, match="does not verify"):
            await other.verify_webhook(headers, body)
    finally:
        await other.close()


@pytest.mark.parametrize("cert_url", [
    "https://evil.example.com/v1/notifications/certs/CERT-1",  # a host not allow-listed
    "https://127.0.0.1.evil.example.com/cert",
    "https://user@evil.example.com@127.0.0.1/cert",
    "ftp://127.0.0.1/cert",
])
async def test_a_certificate_from_a_host_not_allow_listed_is_refused_unfetched(sim, psp, cert_url):
    headers, body = await _a_delivery(sim, psp)
    with pytest.raises(WebhookRejected):
        await psp.verify_webhook({**headers, "PAYPAL-CERT-URL": cert_url}, body)
    assert psp.webhooks.certs_fetched == 0


async def test_plain_http_is_refused_for_a_host_that_is_not_loopback(sim, sim_settings):
    remote = PaypalPsp(msgspec.structs.replace(sim_settings, paypal_cert_hosts=("api.paypal.com", "127.0.0.1")))
    try:
        headers, body = await _a_delivery(sim, remote)
        with pytest.raises(WebhookRejected, match="scheme"):
            await remote.verify_webhook({**headers, "PAYPAL-CERT-URL": "http://api.paypal.com/v1/notifications/certs/X"},
                                        body)
    finally:
        await remote.close()


async def test_a_stale_or_future_transmission_is_rejected(sim, psp):
    _, body = await _a_delivery(sim, psp)
    signer, world = sim.world.signer, sim.world
    now = datetime.datetime.now(datetime.timezone.utc)
    for sent_at in (now - datetime.timedelta(minutes=20), now + datetime.timedelta(minutes=10)):
        headers = signer.headers(body, world.webhook_id, world.cert_url, sent_at=sent_at)
        with pytest.raises(WebhookRejected, match="stale"):
            await psp.verify_webhook(headers, body)
    fresh = signer.headers(body, world.webhook_id, world.cert_url, sent_at=now - datetime.timedelta(minutes=2))
    [event] = await psp.verify_webhook(fresh, body)  # correctly signed and recent: accepted
    assert event.kind == "approved"


async def test_missing_headers_and_other_algorithms_are_rejected(sim, psp):
    headers, body = await _a_delivery(sim, psp)
    without = {k: v for k, v in headers.items() if k != "PAYPAL-TRANSMISSION-SIG"}
    with pytest.raises(WebhookRejected, match="missing"):
        await psp.verify_webhook(without, body)
    with pytest.raises(WebhookRejected, match="algo"):
        await psp.verify_webhook({**headers, "PAYPAL-AUTH-ALGO": "SHA1withRSA"}, body)


async def test_authentic_events_paycell_does_not_act_on_are_ignored(sim, psp):
    world = sim.world
    body = msgspec.json.encode({"id": "WH-TEST-1", "event_type": "CUSTOMER.DISPUTE.CREATED",
                                "create_time": "2026-01-01T00:00:00Z", "resource": {"dispute_id": "PP-D-1"}})
    headers = world.signer.headers(body, world.webhook_id, world.cert_url,
                                   sent_at=datetime.datetime.now(datetime.timezone.utc))
    [event] = await psp.verify_webhook(headers, body)
    assert (event.kind, event.event_id, event.type) == ("ignored", "WH-TEST-1", "CUSTOMER.DISPUTE.CREATED")


async def test_a_certificate_outside_its_validity_dates_is_refused(sim, psp, aiohttp_server):
    from aiohttp import web
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    from paycell.psp.paypal.sim_signing import Signer

    signer = Signer()  # its key, with a certificate that expired yesterday
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expired.paypal.sim")])
    expired = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(signer.key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=30))
               .not_valid_after(now - datetime.timedelta(days=1)).sign(signer.key, hashes.SHA256()))
    async def serve(_request):
        return web.Response(body=expired.public_bytes(serialization.Encoding.PEM))

    app = web.Application()
    app.router.add_get("/cert", serve)
    server = await aiohttp_server(app, host="127.0.0.1")
    body = msgspec.json.encode({"id": "WH-EXPIRED-1", "event_type": "PAYMENT.CAPTURE.COMPLETED", "resource": {}})
    headers = signer.headers(body, sim.world.webhook_id, f"http://127.0.0.1:{server.port}/cert", sent_at=now)
    with pytest.raises(WebhookRejected, match="not valid now"):
        await psp.verify_webhook(headers, body)
    assert psp.webhooks.certs_fetched == 1
