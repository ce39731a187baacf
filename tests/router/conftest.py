"""The router's tests: three test-connector simulators of their own (rt_a, rt_b, rt_c) and a
connector pointed at a port nothing listens on (rt_dead), routed by a table of their own, with a
worker process of their own on its own Redis database (so the suite's worker and these settings
never meet), and breakers that open after 3 technical failures and half-open after 2 s.

Routes: card=rt_a,rt_b  card/EUR=rt_b,rt_a  card/GBP=rt_c,rt_b  bank_account=rt_dead,rt_b.
rt_a's `flaky` tokens fail once (503, nothing charged), rt_b's never; no simulator settles a
`pending` charge within the tests (its deadline here is 2 s).
"""
from __future__ import annotations

import os
import subprocess
import sys

import aiohttp
import msgspec
import pytest
import redis

from paycell.config import load
from tests.conftest import EnvWorker, _free_port, _wait_for_port

SIMS = ("rt_a", "rt_b", "rt_c")
ROUTES = "card=rt_a,rt_b;card/EUR=rt_b,rt_a;card/GBP=rt_c,rt_b;bank_account=rt_dead,rt_b"
FLAKY_FAILURES = {"rt_a": 1, "rt_b": 0, "rt_c": 0}


def _router_redis_url(url: str) -> str:
    base, _, db = url.rpartition("/")
    return f"{base}/{int(db) + 4 if db.isdigit() else 4}"


@pytest.fixture(scope="session")
def sim_ports():
    return {name: _free_port() for name in (*SIMS, "rt_dead")}


@pytest.fixture(scope="session")
def router_env(settings, sim_ports):
    return {
        "PAYCELL_REDIS_URL": _router_redis_url(settings.redis_url),
        "PAYCELL_PSP_TEST_CONNECTORS": ",".join(f"{n}:http://127.0.0.1:{p}" for n, p in sim_ports.items()),
        "PAYCELL_PSP_ROUTES": ROUTES,
        "PAYCELL_PSP_BREAKER_FAILURES_MAX": "3",
        "PAYCELL_PSP_BREAKER_REOPEN_S": "2",
        "PAYCELL_PSP_CONNECTOR_TRIES_MAX": "1",
        "PAYCELL_PSP_FAILOVER_QUIET_S": "0.5",
        "PAYCELL_PSP_PENDING_DEADLINE_S": "2",
        "PAYCELL_PSP_POLL_INTERVAL_MS": "200",
        "PAYCELL_PSP_POLL_INTERVAL_MAX_MS": "800",
        "PAYCELL_RETRIES_MAX": "10",
        "PAYCELL_RETRY_BACKOFF_MIN_MS": "100",
        "PAYCELL_RETRY_BACKOFF_MAX_MS": "1000",
    }


@pytest.fixture(scope="session")
def router_settings(router_env):
    return load({**os.environ, **router_env})


@pytest.fixture(scope="session")
def router_sims(sim_ports):
    """The simulators, as real processes: name -> base URL."""
    procs = []
    try:
        for name in SIMS:
            env = {**os.environ, "PAYCELL_PSP_SIM_SETTLE_S": "600",
                   "PAYCELL_PSP_SIM_FLAKY_FAILURES": str(FLAKY_FAILURES[name])}
            proc = subprocess.Popen([sys.executable, "-m", "paycell.psp.simulator", "--port", str(sim_ports[name])],
                                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(proc)
            _wait_for_port(sim_ports[name], proc)
        yield {name: f"http://127.0.0.1:{sim_ports[name]}" for name in SIMS}
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


@pytest.fixture(scope="session")
def router_worker(migrated, router_sims, router_env, tmp_path_factory):
    redis.Redis.from_url(router_env["PAYCELL_REDIS_URL"]).flushdb()  # messages and breakers of earlier runs
    w = EnvWorker(str(tmp_path_factory.mktemp("router-worker") / "worker.log"), router_env)
    w.start()
    yield w
    w.stop()


@pytest.fixture
async def router_api(aiohttp_client, router_settings, router_worker):
    from paycell.http.app import create_app
    return await aiohttp_client(create_app(router_settings))


class Sim:
    """A test simulator's own record, read over HTTP."""

    def __init__(self, base_url: str):
        self.base_url = base_url

    async def _call(self, method: str, path: str, body: object = None) -> dict:
        async with aiohttp.ClientSession() as session:
            data = None if body is None else msgspec.json.encode(body)
            async with session.request(method, self.base_url + path, data=data) as resp:
                assert resp.status == 200, (resp.status, await resp.text())
                return msgspec.json.decode(await resp.read())

    async def key_stats(self, key: str) -> dict:
        return await self._call("GET", f"/v1/stats/{key}")

    async def outage(self, on: bool) -> None:
        await self._call("POST", "/v1/outage", {"outage": on})

    async def outage_stats(self) -> dict:
        return await self._call("GET", "/v1/outage")


@pytest.fixture(scope="session")
def sims(router_sims):
    return {name: Sim(url) for name, url in router_sims.items()}
