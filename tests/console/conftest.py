"""The console's tests: the whole web app (API and console) over real HTTP, a worker of their own
on a Redis database of their own (the suite's db + 7) running the shipped default rules (a large
pay-in on a new instrument is parked for review), and a test-PSP simulator of their own (the
dead-letter test puts it in an outage without disturbing anyone else's)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

import paycell
from paycell.config import load
from tests.conftest import EnvWorker, _free_port, _wait_for_port
from tests.helpers import operator_header

DEFAULT_RULES = str(Path(paycell.__file__).parent / "rules" / "default.rules")


def _console_redis_url(url: str) -> str:
    base, _, db = url.rpartition("/")
    return f"{base}/{int(db) + 7 if db.isdigit() else 7}"


@pytest.fixture(scope="session")
def console_sim_url() -> str:
    return f"http://127.0.0.1:{_free_port()}"


@pytest.fixture(scope="session")
def console_env(settings, console_sim_url):
    return {
        "PAYCELL_REDIS_URL": _console_redis_url(settings.redis_url),
        "PAYCELL_RISK_RULES_FILE": DEFAULT_RULES,
        "PAYCELL_PSP_SIM_URL": console_sim_url,
        "PAYCELL_PSP_SIM_PORT": console_sim_url.rsplit(":", 1)[1],
    }


@pytest.fixture(scope="session")
def console_settings(console_env):
    return load({**os.environ, **console_env})


@pytest.fixture(scope="session")
def console_sim(console_settings):
    """The test connector's simulator, for the console's worker only."""
    port = console_settings.psp_sim_port
    proc = subprocess.Popen([sys.executable, "-m", "paycell.psp.simulator", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, proc)
        yield console_settings.psp_sim_url
    finally:
        proc.terminate()
        proc.wait(10)


# Module-scoped: the suite's own worker tests (test_shutdown, test_worker_metrics) use the same Redis
# database later in the run, and a worker left running with the default rules would take their messages.
@pytest.fixture(scope="module")
def console_worker(migrated, console_sim, console_env, tmp_path_factory):
    redis.Redis.from_url(console_env["PAYCELL_REDIS_URL"]).flushdb()  # messages of earlier runs
    w = EnvWorker(str(tmp_path_factory.mktemp("console-worker") / "worker.log"), console_env)
    w.start()
    yield w
    w.stop()


@pytest.fixture
async def web(aiohttp_client, console_settings, migrated):
    """The web app (the API and /console) on a real port, sending to the console's worker's queue."""
    from paycell.http.app import create_app
    return await aiohttp_client(create_app(console_settings))


@pytest.fixture
def operator_token(console_settings):
    def token(user_id: str = "ops-console") -> str:
        return operator_header(console_settings, user_id)["Authorization"].removeprefix("Bearer ")
    return token
