"""Every outbound https hop (the connectors, PayPal's certificate URL, settlement reports, the
identity provider) goes through paycell.tls.client's context: a certificate passes only when a
trusted CA signed it for the host and it is valid now, at TLS 1.2 or later, and, where the
connector pins keys, only with a pinned key. Each refusal happens in the handshake: the server's
app never sees a request (no credential or idempotency key left paycell)."""
from __future__ import annotations

import datetime
import ssl
import subprocess
import warnings

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from structlog.testing import capture_logs

from paycell.tls import client as tls_client
from paycell.tls.pinning import PinMismatch, parse_pins, spki_sha256
from tests.tls.conftest import leaf_cert, serve_https

TIMEOUT = aiohttp.ClientTimeout(total=10)


async def fetch(url: str, tls: ssl.SSLContext) -> str:
    async with tls_client.session(tls, timeout=TIMEOUT) as http:
        async with http.get(url) as response:
            return await response.text()


def pin_of(leaf) -> str:
    return spki_sha256(ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode()))


async def test_a_certificate_a_trusted_ca_signed_for_the_host_passes(ca, ca_file, tmp_path):
    async with serve_https(leaf_cert(ca), tmp_path) as served:
        assert await fetch(served.url("localhost"), tls_client.context(ca_file)) == "ok"
        assert await fetch(served.url("127.0.0.1"), tls_client.context(ca_file)) == "ok"
        assert served.requests == 2


@pytest.mark.parametrize("case, reason", [
    ("expired", "certificate has expired"),
    ("another host's", "Hostname mismatch"),
    ("self-signed (an unknown CA)", "unable to get local issuer certificate"),
    ("from a CA only the test trusts, without PAYCELL_TLS_CA_FILE", "unable to get local issuer certificate"),
])
async def test_an_unverifiable_certificate_is_refused_before_any_request(case, reason, ca, rogue_ca, ca_file,
                                                                         tmp_path):
    leaf = {"expired": lambda: leaf_cert(ca, expired=True),
            "another host's": lambda: leaf_cert(ca, "payments.example.com"),
            "self-signed (an unknown CA)": lambda: leaf_cert(rogue_ca)}.get(case, lambda: leaf_cert(ca))()
    tls = tls_client.context("" if "without" in case else ca_file)
    async with serve_https(leaf, tmp_path) as served:
        with pytest.raises(aiohttp.ClientConnectorCertificateError) as caught:
            await fetch(served.url(), tls)
        assert served.requests == 0
    assert reason in str(caught.value.certificate_error), (case, caught.value)


def tls_1_1_only(context: ssl.SSLContext) -> ssl.SSLContext:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python warns about TLS 1.1 itself
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL 3 would not even offer TLS 1.1 otherwise
    return context


async def test_a_server_offering_only_tls_1_1_is_refused(ca, ca_file, tmp_path):
    leaf = leaf_cert(ca)
    old = tls_1_1_only(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    leaf.configure_cert(old)
    willing = tls_1_1_only(ssl.create_default_context(cafile=ca_file))
    async with serve_https(leaf, tmp_path, context=old) as served:
        assert await fetch(served.url(), willing) == "ok"  # the server does speak TLS 1.1
        with pytest.raises(aiohttp.ClientConnectorError):
            await fetch(served.url(), tls_client.context(ca_file))
        assert served.requests == 1


async def test_a_pinned_key_passes_and_any_other_is_refused_in_the_handshake_and_logged(ca, ca_file, tmp_path):
    leaf, other_key = leaf_cert(ca), pin_of(leaf_cert(ca))  # same CA, same host: only the key differs
    good = pin_of(leaf)
    async with serve_https(leaf, tmp_path) as served:
        assert await fetch(served.url(), tls_client.context(ca_file, "stripe", (other_key, good))) == "ok"
        with capture_logs() as logs:
            with pytest.raises(aiohttp.ClientConnectorCertificateError) as caught:
                await fetch(served.url(), tls_client.context(ca_file, "stripe", (other_key,)))
        assert served.requests == 1  # the refused connection sent nothing
    error = caught.value.certificate_error
    assert isinstance(error, PinMismatch) and error.got == good and error.expected == (other_key,)
    [line] = [e for e in logs if e["event"] == "tls.pin_mismatch"]
    assert line["connector"] == "stripe" and line["host"] == "localhost"
    assert line["expected"] == [other_key] and line["got"] == good and line["log_level"] == "error"


def test_the_pin_is_what_the_readme_openssl_pipeline_prints(ca):
    leaf = leaf_cert(ca)
    pem = leaf.cert_chain_pems[0].bytes()
    pubkey = subprocess.run(["openssl", "x509", "-pubkey", "-noout"], input=pem, capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pubkey, capture_output=True,
                         check=True).stdout
    digest = subprocess.run(["openssl", "dgst", "-sha256", "-binary"], input=der, capture_output=True,
                            check=True).stdout
    printed = subprocess.run(["base64"], input=digest, capture_output=True, check=True).stdout.decode().strip()
    assert pin_of(leaf) == printed
    assert parse_pins(f"{printed}|{printed}") == (printed, printed)
    for bad in ("", "abc", printed[:-4], "sha256/" + printed):
        with pytest.raises(ValueError):
            parse_pins(bad)


def test_the_client_context_verifies_and_floors_the_version(ca_file):
    for tls in (tls_client.context(), tls_client.context(ca_file, "adyen", ("A" * 43 + "=",))):
        assert tls.verify_mode == ssl.CERT_REQUIRED and tls.check_hostname
        assert tls.minimum_version == ssl.TLSVersion.TLSv1_2


def write_crl(ca, revoked_leaves, path) -> str:
    """A CRL the CA signs, revoking `revoked_leaves` (trustme makes none; cryptography does)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
               .last_update(now - datetime.timedelta(hours=1)).next_update(now + datetime.timedelta(days=1)))
    for leaf in revoked_leaves:
        serial = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).serial_number
        builder = builder.add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(serial)
                                                  .revocation_date(now - datetime.timedelta(hours=1)).build())
    key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
    path.write_bytes(builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    return str(path)


async def test_a_revoked_certificate_is_refused_when_crls_are_configured(ca, rogue_ca, ca_file, tmp_path):
    revoked, good = leaf_cert(ca), leaf_cert(ca)
    crl_file = write_crl(ca, [revoked], tmp_path / "crl.pem")
    async with serve_https(revoked, tmp_path) as served:
        assert await fetch(served.url(), tls_client.context(ca_file)) == "ok"  # without the CRL it would pass
        with pytest.raises(aiohttp.ClientConnectorCertificateError, match="certificate revoked"):
            await fetch(served.url(), tls_client.context(ca_file, crl_file=crl_file))
        assert served.requests == 1
    async with serve_https(good, tmp_path) as served:
        assert await fetch(served.url(), tls_client.context(ca_file, crl_file=crl_file)) == "ok"
        # Once CRLs are configured, an issuer without one in the file is refused too (stated in the README).
        other_crl = write_crl(rogue_ca, [], tmp_path / "other-crl.pem")
        with pytest.raises(aiohttp.ClientConnectorCertificateError, match="unable to get certificate CRL"):
            await fetch(served.url(), tls_client.context(ca_file, crl_file=other_crl))
