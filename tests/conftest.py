"""Fixtures: a real Postgres (database `paycell_test`, migrated once per session) and a real
Redis (db 1), both taken from the environment `scripts/test` prepares."""
from __future__ import annotations

import os

import pytest

from paycell.config import load
from paycell.config.settings import database_name, with_database
from paycell.store.accounts import AccountBook
from paycell.store.db import create_pool
from paycell.store.migrate import migrate


def _test_settings():
    settings = load()
    overrides = {}
    # Never run the suite against a dev or production database by accident.
    if not database_name(settings.admin_database_url).endswith("_test"):
        overrides["admin_database_url"] = with_database(settings.admin_database_url, "paycell_test")
        if settings.database_url:
            overrides["database_url"] = with_database(settings.database_url, "paycell_test")
    if "PAYCELL_REDIS_URL" not in os.environ:
        overrides["redis_url"] = "redis://127.0.0.1:6379/1"
    overrides.setdefault("retry_backoff_min_ms", 50)
    overrides.setdefault("retry_backoff_max_ms", 400)
    overrides.setdefault("retries_max", 3)
    return load(**overrides) if overrides else settings


@pytest.fixture(scope="session")
def settings():
    return _test_settings()


@pytest.fixture(scope="session")
async def migrated(settings):
    await migrate(settings)
    return settings


@pytest.fixture(scope="session")
async def pool(migrated):
    pool = await create_pool(migrated, size_max=40)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
def book(settings):
    return AccountBook(settings.system_account_slices)
