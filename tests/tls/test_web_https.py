"""`paycell web` itself (a real process): HTTPS with the configured certificate, TLS 1.2 at
least, ECDHE + AEAD ciphers for 1.2, HSTS on its answers; production refuses plain HTTP unless a
TLS-terminating proxy is declared."""
from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import aiohttp
import msgspec
import pytest
import trustme

from paycell.config import SettingsError
from paycell.production import refuse_plain_http
from tests.conftest import _wait_for_port
from tests.test_production import DEV_ONLY
from tests.tls.conftest import free_port, serve_https, write_leaf
from tests.tls.test_outbound import tls_1_1_only

PAYCELL = os.path.join(os.path.dirname(sys.executable), "paycell")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def https_web(migrated, ca, tmp_path_factory):
    """`paycell web` serving HTTPS with an RSA certificate (so that RSA key exchange could be
    negotiated if the server allowed it); yields its port."""
    cert_file, key_file = write_leaf(ca.issue_cert("localhost", "127.0.0.1", key_type=trustme.KeyType.RSA),
                                     tmp_path_factory.mktemp("web-tls"))
    port, log = free_port(), tmp_path_factory.mktemp("web-log") / "web.log"
    env = os.environ | {"PAYCELL_HTTP_PORT": str(port), "PAYCELL_TLS_CERT_FILE": cert_file,
                        "PAYCELL_TLS_KEY_FILE": key_file, "PAYCELL_LOG_LEVEL": "warning"}
    with log.open("wb") as out:
        proc = subprocess.Popen([PAYCELL, "web"], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        _wait_for_port(port, proc)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("behind_proxy, hsts", [(True, "max-age=600"), (False, None)])
async def test_hsts_goes_out_behind_a_declared_proxy_and_never_over_plain_http(aiohttp_client, migrated,
                                                                               behind_proxy, hsts):
    from paycell.http.app import create_app

    settings = msgspec.structs.replace(migrated, tls_behind_proxy=behind_proxy, tls_hsts_max_age_s=600)
    client = await aiohttp_client(create_app(settings))
    response = await client.get("/health")
    assert response.status == 200 and response.headers.get("Strict-Transport-Security") == hsts


def handshake(port: int, context: ssl.SSLContext) -> tuple[str, str]:
    """(TLS version, cipher) the server agreed to with a client using `context`."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.version(), tls.cipher()[0]


async def test_the_web_answers_over_https_with_hsts(https_web, ca_file):
    context = ssl.create_default_context(cafile=ca_file)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http:
        async with http.get(f"https://localhost:{https_web}/health") as response:
            assert response.status == 200
            assert response.headers["Strict-Transport-Security"] == "max-age=31536000"


def test_the_web_speaks_tls_1_3_and_1_2_with_forward_secret_aead_ciphers(https_web, ca_file):
    assert handshake(https_web, ssl.create_default_context(cafile=ca_file))[0] == "TLSv1.3"
    tls12 = ssl.create_default_context(cafile=ca_file)
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    version, cipher = handshake(https_web, tls12)
    assert version == "TLSv1.2" and cipher.startswith("ECDHE-") and ("GCM" in cipher or "CHACHA20" in cipher)


@pytest.mark.parametrize("case, ciphers", [
    ("RSA key exchange (no forward secrecy)", "AES128-GCM-SHA256:AES256-GCM-SHA384"),
    ("CBC, not AEAD", "ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA384"),
])
async def test_the_web_refuses_tls_1_2_ciphers_outside_its_list(https_web, ca, ca_file, tmp_path, case, ciphers):
    weak = ssl.create_default_context(cafile=ca_file)
    weak.maximum_version = ssl.TLSVersion.TLSv1_2
    weak.set_ciphers(ciphers)
    # OpenSSL's defaults would agree to them: the refusal is paycell's cipher list.
    lenient = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    lenient.set_ciphers("DEFAULT")
    leaf = ca.issue_cert("localhost", key_type=trustme.KeyType.RSA)
    leaf.configure_cert(lenient)
    async with serve_https(leaf, tmp_path, context=lenient) as served:
        assert (await asyncio.to_thread(handshake, served.port, weak))[0] == "TLSv1.2"
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        handshake(https_web, weak)


async def test_the_web_refuses_a_client_limited_to_tls_1_1(https_web, ca, ca_file, tmp_path):
    old_client = tls_1_1_only(ssl.create_default_context(cafile=ca_file))
    old_server = tls_1_1_only(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    leaf = ca.issue_cert("localhost")
    leaf.configure_cert(old_server)
    async with serve_https(leaf, tmp_path, context=old_server) as served:  # the client can speak TLS 1.1
        assert (await asyncio.to_thread(handshake, served.port, old_client))[0] == "TLSv1.1"
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        handshake(https_web, old_client)


def test_plain_http_to_the_https_port_gets_no_api(https_web):
    with socket.create_connection(("127.0.0.1", https_web), timeout=10) as raw:
        raw.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = raw.recv(4096)
    assert b'"status"' not in answer and not answer.startswith(b"HTTP/1.1 200")


def test_production_refuses_plain_http_unless_a_tls_proxy_is_declared(settings):
    production = msgspec.structs.replace(settings, env="production")
    with pytest.raises(SettingsError, match="PAYCELL_TLS_CERT_FILE.*PAYCELL_TLS_BEHIND_PROXY=true"):
        refuse_plain_http(production)
    refuse_plain_http(msgspec.structs.replace(production, tls_behind_proxy=True))
    refuse_plain_http(msgspec.structs.replace(production, tls_cert_file="/etc/paycell/tls.pem",
                                              tls_key_file="/etc/paycell/tls.key"))
    refuse_plain_http(settings)  # development may serve plain HTTP


def test_paycell_web_in_production_without_a_certificate_does_not_start(settings):
    env = {k: v for k, v in os.environ.items() if k not in DEV_ONLY}
    env |= {"PAYCELL_ENV": "production", "PAYCELL_PSP_DEFAULT": "acme", "PAYCELL_HTTP_PORT": str(free_port()),
            "PAYCELL_REDIS_URL": "redis://:unused-password@127.0.0.1:1/0"}
    out = subprocess.run([PAYCELL, "web"], capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert out.returncode != 0 and "PAYCELL_TLS_CERT_FILE is unset" in out.stderr, out.stderr
    # Declared behind a TLS proxy it gets past that check (to the next one: the test database's
    # owner is a superuser, which production refuses).
    proxied = env | {"PAYCELL_TLS_BEHIND_PROXY": "true", "PAYCELL_DATABASE_URL": settings.admin_database_url}
    out = subprocess.run([PAYCELL, "web"], capture_output=True, text=True, timeout=60, cwd=ROOT, env=proxied)
    assert out.returncode != 0 and "superuser" in out.stderr and "PAYCELL_TLS" not in out.stderr, out.stderr


def test_a_certificate_and_key_that_do_not_match_stop_the_web(ca, rogue_ca, tmp_path):
    cert_file, _ = write_leaf(ca.issue_cert("localhost"), tmp_path, name="one")
    _, other_key = write_leaf(rogue_ca.issue_cert("localhost"), tmp_path, name="two")
    env = os.environ | {"PAYCELL_HTTP_PORT": str(free_port()), "PAYCELL_TLS_CERT_FILE": cert_file,
                        "PAYCELL_TLS_KEY_FILE": other_key}
    out = subprocess.run([PAYCELL, "web"], capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert out.returncode != 0 and "cannot serve HTTPS" in out.stderr, out.stderr
