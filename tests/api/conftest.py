"""The API tests run with no worker consuming their messages, so a payment they create stays in
`requested` until a test moves it: their app sends to a Redis database no worker listens on."""
from __future__ import annotations

import msgspec
import pytest
import redis

from tests.helpers import assert_ledger_clean


def parked(settings, **overrides):
    """`settings` sending to a Redis database no worker listens on (flushed), with `overrides`."""
    base, _, db = settings.redis_url.rpartition("/")
    redis_url = f"{base}/{int(db) + 2 if db.isdigit() else 3}"
    redis.Redis.from_url(redis_url).flushdb()
    return msgspec.structs.replace(settings, redis_url=redis_url, **overrides)


@pytest.fixture
async def api(aiohttp_client, migrated, pool):
    from paycell.http.app import create_app

    client = await aiohttp_client(create_app(parked(migrated)))
    yield client
    # No worker moves these payments, but every test that may touch money ends with the check.
    await assert_ledger_clean(pool)
