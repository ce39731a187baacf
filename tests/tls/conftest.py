"""A locally made CA (trustme) and HTTPS servers on loopback for the transport security tests.

`ca` is the CA the client is told to trust (PAYCELL_TLS_CA_FILE); `rogue_ca` is another one,
which nobody trusts: a certificate it signs stands for a self-signed or otherwise unknown one.
"""
from __future__ import annotations

import contextlib
import datetime
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
from aiohttp import web

from paycell.tls import server as tls_server

HOSTS = ("localhost", "127.0.0.1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def rogue_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(ca, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def write_leaf(leaf: trustme.LeafCert, directory: Path, name: str = "server") -> tuple[str, str]:
    """(chain file, key file) of a leaf certificate, as an operator would hand them to paycell."""
    cert_file, key_file = directory / f"{name}.pem", directory / f"{name}.key"
    cert_file.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key_file))
    key_file.chmod(0o600)
    return str(cert_file), str(key_file)


def leaf_cert(ca: trustme.CA, *hosts: str, expired: bool = False) -> trustme.LeafCert:
    if not expired:
        return ca.issue_cert(*(hosts or HOSTS))
    now = datetime.datetime.now(datetime.timezone.utc)
    return ca.issue_cert(*(hosts or HOSTS), not_before=now - datetime.timedelta(days=30),
                         not_after=now - datetime.timedelta(days=1))


class Served:
    """An aiohttp app served over HTTPS on loopback; `requests` counts what reached the app."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.requests = 0

    def url(self, host: str = "localhost") -> str:
        return f"https://{host}:{self.port}"


@contextlib.asynccontextmanager
async def serve_https(leaf: trustme.LeafCert, tmp_path: Path, app: web.Application | None = None,
                      context: ssl.SSLContext | None = None) -> AsyncIterator[Served]:
    """Serve `app` (default: GET / answers "ok") with `leaf`'s certificate, through paycell's own
    server context unless `context` is given."""
    cert_file, key_file = write_leaf(leaf, tmp_path, name=f"leaf{free_port()}")
    served = Served(free_port())
    if app is None:
        app = web.Application()

        async def hello(request: web.Request) -> web.Response:
            served.requests += 1
            return web.Response(text="ok")

        app.router.add_get("/", hello)
    if context is None:
        context = tls_server.context(cert_file, key_file)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", served.port, ssl_context=context).start()
    try:
        yield served
    finally:
        await runner.cleanup()
