"""What the risk tests share: the synthetic training data and model (built once per session), and a
worker and an app with the shipped default rules (the suite's others run the baseline rules), behind
a trusted proxy (127.0.0.1) that names the client's country in CF-IPCountry, on a Redis database of
their own so that only this worker takes their messages."""
from __future__ import annotations

import os

import pytest
import redis

from paycell.config import load
from paycell.risk import train
from paycell.risk.synthetic import generate
from tests.conftest import EnvWorker

# Small enough to fit in a few seconds, large enough for ~75 held-out frauds of every pattern.
USERS, DAYS, SEED = 2_000, 30, 7


@pytest.fixture(scope="session")
def synthetic_data() -> train.Dataset:
    return train.build_dataset(generate(users=USERS, days=DAYS, seed=SEED), holdout_share=0.2)


@pytest.fixture(scope="session")
def synthetic_model(synthetic_data):
    return train.fit(synthetic_data, seed=SEED)

COUNTRY_HEADER = "CF-IPCountry"


@pytest.fixture(autouse=True)
async def no_model_left_promoted(pool):
    """A model a test promoted scores every later payment of the session, in every worker: each
    test here ends with none promoted (promoted -> retired is a move the app may make)."""
    yield
    await pool.execute("UPDATE risk_model SET status = 'retired' WHERE status = 'promoted'")


def _risk_redis_url(url: str) -> str:
    base, _, db = url.rpartition("/")
    return f"{base}/{int(db) + 1 if db.isdigit() else 1}"


@pytest.fixture(scope="session")
def risk_env(settings, psp_sim):
    return {
        "PAYCELL_REDIS_URL": _risk_redis_url(settings.redis_url),
        "PAYCELL_RISK_RULES_FILE": "",  # the shipped paycell/rules/default.rules
        "PAYCELL_TRUSTED_PROXIES": "127.0.0.1/32,::1/128",
        "PAYCELL_CLIENT_COUNTRY_HEADER": COUNTRY_HEADER,
    }


@pytest.fixture(scope="session")
def risk_settings(migrated, risk_env):
    return load({**os.environ, **risk_env})


@pytest.fixture(scope="session")
def risk_worker(migrated, risk_env, tmp_path_factory):
    redis.Redis.from_url(risk_env["PAYCELL_REDIS_URL"]).flushdb()
    w = EnvWorker(str(tmp_path_factory.mktemp("risk-worker") / "worker.log"), risk_env)
    w.start()
    yield w
    w.stop()


@pytest.fixture
async def risk_api(aiohttp_client, risk_settings, risk_worker):
    from paycell.http.app import create_app
    return await aiohttp_client(create_app(risk_settings))
