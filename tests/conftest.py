"""Fixtures: a real Postgres (database `paycell_test`, migrated once per session), a real Redis
(db 1), the PSP simulator and a Dramatiq worker as real processes, and the API over real HTTP.

The test environment is written into os.environ at import, so this process and every process
it starts (worker, simulator, `paycell` commands) read the same settings.
"""
from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
import socket
import subprocess
import sys
import time

import asyncpg
import pytest
import redis

from paycell.config import load, secret_strength
from paycell.config.settings import database_name, with_database
from paycell.psp import sims


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _test_environment() -> dict[str, str]:
    base = load()
    env = {}
    # Never run the suite against a dev or production database by accident.
    if not database_name(base.admin_database_url).endswith("_test"):
        env["PAYCELL_ADMIN_DATABASE_URL"] = with_database(base.admin_database_url, "paycell_test")
        if base.database_url:
            env["PAYCELL_DATABASE_URL"] = with_database(base.database_url, "paycell_test")
    if "PAYCELL_REDIS_URL" not in os.environ:
        env["PAYCELL_REDIS_URL"] = "redis://127.0.0.1:6379/1"
    # The suite's broker is Redis; the broker matrix (tests/broker_matrix.py) adds RabbitMQ on a vhost
    # of its own, never one a developer's environment names.
    env["PAYCELL_BROKER_URL"] = ""
    if not os.environ.get("PAYCELL_JWT_SECRET"):  # paycell ships none: a fresh one per session
        env["PAYCELL_JWT_SECRET"] = secret_strength.generate()
    sim_port = _free_port()
    env.update({
        "PAYCELL_PSP_SIM_PORT": str(sim_port),
        "PAYCELL_PSP_SIM_URL": f"http://127.0.0.1:{sim_port}",
        # Short leases, timeouts and backoffs so that failure paths finish in seconds.
        "PAYCELL_PSP_LEASE_S": "3",
        "PAYCELL_PSP_TIMEOUT_S": "1",
        "PAYCELL_PSP_SIM_SLOW_S": "2",
        "PAYCELL_PSP_POLL_INTERVAL_MS": "300",
        "PAYCELL_RETRIES_MAX": "3",
        "PAYCELL_RETRY_BACKOFF_MIN_MS": "50",
        "PAYCELL_RETRY_BACKOFF_MAX_MS": "400",
        "PAYCELL_LOG_LEVEL": "info",
        # Rate limits far above what any test sends (some send 300 payments at once, from the
        # same test tokens); the rate-limit tests set low ones on their own app.
        "PAYCELL_RATE_USER_PAYMENTS_PER_MINUTE": "1000000",
        "PAYCELL_RATE_INSTRUMENT_PAYMENTS_PER_MINUTE": "1000000",
        "PAYCELL_INSTRUMENT_DECLINES_MAX": "100000",
        "PAYCELL_PREFER_WAIT_PER_USER_MAX": "10000",
        # The `test` connector's breaker is shared by every test (its state lives in Redis): many
        # tests fail calls on purpose (`down`, `flaky` tokens), so it opens only in the router's
        # tests, which use connectors of their own (tests/test_router_*.py).
        "PAYCELL_PSP_BREAKER_FAILURES_MAX": "1000000",
        # The block lists only: tests/risk/baseline.rules says why; tests/risk use the default rules.
        "PAYCELL_RISK_RULES_FILE": str(Path(__file__).parent / "risk" / "baseline.rules"),
        # Workers see a rule set, list or model a test just put in force on their next payment.
        "PAYCELL_RISK_RELOAD_S": "0",
    })
    # Every connector points at its simulator under the same port, with this session's secrets.
    env.update(sims.connector_env(f"http://127.0.0.1:{sim_port}"))
    # Every option routed to the test connector first, then to each provider that carries it (the
    # conformance suite attaches providers' tokens on their connectors).
    env["PAYCELL_PSP_ROUTES"] = sims.DEV_ROUTES
    return env


os.environ.update(_test_environment())

from paycell.store.accounts import AccountBook  # noqa: E402
from paycell.store.db import create_pool  # noqa: E402
from paycell.store.migrate import migrate  # noqa: E402


@pytest.fixture(scope="session")
def settings():
    return load()


@pytest.fixture(scope="session")
async def migrated(settings):
    """The test database, dropped and created afresh for each run (a database left by hundreds of
    earlier runs holds what some tests count: open review items past a listing's limit, breaks
    reconciliation already queued), then migrated. Only a database whose name ends in `_test` is
    ever dropped."""
    name = database_name(settings.admin_database_url)
    if re.fullmatch(r"[A-Za-z0-9_]{1,58}_test", name):
        admin = await asyncpg.connect(with_database(settings.admin_database_url, "postgres"))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
    workers = [w for w in os.environ.get("PAYCELL_TEST_CITUS_WORKERS", "").split(",") if w]
    if workers:  # the suite on Citus (docs/scale.md): the workers' copy of the database goes too
        await _drop_on_workers(settings, workers, name)
    await migrate(settings)
    if workers:
        from paycell.citus import cluster

        await cluster.distribute(settings, workers, echo=lambda line: None)
    return settings


async def _drop_on_workers(settings, workers: list[str], name: str) -> None:
    from paycell.citus.cluster import node_url

    if not re.fullmatch(r"[A-Za-z0-9_]{1,58}_test", name):
        raise RuntimeError(f"the Citus suite drops its database on the workers: {name!r} must end in _test")
    for node in workers:
        admin = await asyncpg.connect(with_database(node_url(settings.admin_database_url, node), "postgres"))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture(scope="session")
async def pool(migrated):
    pool = await create_pool(migrated, size_max=40)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
def book(settings):
    return AccountBook.from_settings(settings)


@pytest.fixture(scope="session")
def redis_client(settings):
    client = redis.Redis.from_url(settings.redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def redis_broker(settings):
    from paycell.actors.broker import build_broker
    return build_broker(settings)


@pytest.fixture(scope="session")
def broker(redis_broker):
    """The suite's broker (tests/broker_matrix.py gives the pipeline tests one per broker)."""
    return redis_broker


def _wait_for_port(port: int, proc: subprocess.Popen, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout_s}s")


@pytest.fixture(scope="session")
def psp_sim(settings):
    proc = subprocess.Popen([sys.executable, "-m", "paycell.psp.simulator", "--port", str(settings.psp_sim_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(settings.psp_sim_port, proc)
        yield settings.psp_sim_url
    finally:
        proc.terminate()
        proc.wait(10)


class Worker:
    """A `dramatiq paycell.actors.worker` process that tests can kill and start again."""

    def __init__(self, log_path: str):
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dramatiq", "paycell.actors.worker", "--processes", "1", "--threads", "8"],
            stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # booted when the context middleware has logged
            with open(self.log_path, "rb") as f:
                if f.read().count(b"worker.booted") > self.boots:
                    self.boots += 1
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}; see {self.log_path}")
            time.sleep(0.1)
        raise RuntimeError(f"worker did not boot; see {self.log_path}")

    boots = 0

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            # SIGKILL the whole group dramatiq made (its supervisor and the worker process).
            for pid in _children(self.proc.pid) + [self.proc.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


class EnvWorker(Worker):
    """The suite's Worker, started with extra environment (its own Redis database, rules ...)."""

    def __init__(self, log_path: str, env: dict[str, str]):
        super().__init__(log_path)
        self.env = env

    def start(self) -> None:
        saved = dict(os.environ)
        os.environ.update(self.env)
        try:
            super().start()
        finally:
            os.environ.clear()
            os.environ.update(saved)


@pytest.fixture
async def owner(migrated):
    """A connection as the schema owner role (the admin URL, then SET ROLE to the owner), for what
    only the owner may write: history rows, guards the app role must not be able to pass."""
    conn = await asyncpg.connect(migrated.admin_database_url)
    await conn.execute(f'SET ROLE "{migrated.owner_role}"')
    yield conn
    await conn.close()


@pytest.fixture(scope="session")
def redis_worker(migrated, psp_sim, redis_client, tmp_path_factory):
    """The session's worker, on the Redis broker."""
    redis_client.flushdb()  # messages left by an earlier run must not leak into this one
    w = Worker(str(tmp_path_factory.mktemp("worker") / "worker.log"))
    w.start()
    yield w
    w.stop()


@pytest.fixture(scope="session")
def worker(redis_worker):
    """The worker of the suite's broker (tests/broker_matrix.py gives the pipeline tests one per broker)."""
    return redis_worker


RABBITMQ_ADDRESS = ("127.0.0.1", 5672)  # the machine's RabbitMQ (guest/guest), shared: never stopped here


@pytest.fixture(scope="session")
def rabbitmq_url():
    """An amqp:// URL to a vhost of this session's own on the machine's RabbitMQ (concurrent suites
    share the server, never a queue), deleted afterwards; skips, saying why, when there is none."""
    from tests.rabbitmq import own_vhost, unavailable

    reason = unavailable(RABBITMQ_ADDRESS)
    if reason:
        pytest.skip(f"RabbitMQ tests skipped: {reason}")
    with own_vhost(RABBITMQ_ADDRESS, f"paycell_test_{os.getpid()}") as url:
        yield url


@pytest.fixture
async def api(aiohttp_client, migrated):
    from paycell.http.app import create_app
    return await aiohttp_client(create_app(migrated))

