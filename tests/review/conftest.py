"""The review queue's tests run the shipped default rules (paycell/rules/default.rules): a pay-in
or pay-out over 500.00 USD on an instrument attached less than a day ago goes to `review`. They
get a worker process of their own on a Redis database of their own (the suite's worker runs the
block lists only), and an API whose messages reach that worker.

Items expire REVIEW_EXPIRY_S after they open, but nothing expires them unless a test runs the
expiry (no scheduler runs in the tests); claims lapse after CLAIM_S.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis

import paycell
from paycell.config import load
from tests.conftest import EnvWorker

REVIEW_EXPIRY_S = 3
CLAIM_S = 600  # long enough that no claim lapses while a loaded machine runs a CLI; tests backdate claims
DEFAULT_RULES = str(Path(paycell.__file__).parent / "rules" / "default.rules")


def _review_redis_url(url: str) -> str:
    base, _, db = url.rpartition("/")
    return f"{base}/{int(db) + 6 if db.isdigit() else 6}"


@pytest.fixture(scope="session")
def review_env(settings):
    return {
        "PAYCELL_REDIS_URL": _review_redis_url(settings.redis_url),
        "PAYCELL_RISK_RULES_FILE": DEFAULT_RULES,
        "PAYCELL_REVIEW_EXPIRY_S": str(REVIEW_EXPIRY_S),
        "PAYCELL_REVIEW_CLAIM_S": str(CLAIM_S),
    }


@pytest.fixture(scope="session")
def review_settings(review_env):
    return load({**os.environ, **review_env})


@pytest.fixture(scope="session")
def review_worker(migrated, psp_sim, review_env, tmp_path_factory):
    redis.Redis.from_url(review_env["PAYCELL_REDIS_URL"]).flushdb()  # messages of earlier runs
    w = EnvWorker(str(tmp_path_factory.mktemp("review-worker") / "worker.log"), review_env)
    w.start()
    yield w
    w.stop()


@pytest.fixture(scope="session")
def review_broker(review_settings):
    from paycell.actors.broker import build_broker
    return build_broker(review_settings)


@pytest.fixture
async def review_api(aiohttp_client, review_settings, review_worker):
    from paycell.http.app import create_app
    return await aiohttp_client(create_app(review_settings))
