"""The API tests run with no worker consuming their messages, so a payment they create stays in
`requested` until a test moves it: their app sends to a Redis database no worker listens on."""
from __future__ import annotations

import msgspec
import pytest
import redis

from tests.helpers import assert_ledger_clean


@pytest.fixture
async def api(aiohttp_client, migrated, pool):
    from paycell.http.app import create_app

    base, _, db = migrated.redis_url.rpartition("/")
    parked = f"{base}/{int(db) + 2 if db.isdigit() else 3}"
    redis.Redis.from_url(parked).flushdb()
    client = await aiohttp_client(create_app(msgspec.structs.replace(migrated, redis_url=parked)))
    yield client
    # No worker moves these payments, but every test that may touch money ends with the check.
    await assert_ledger_clean(pool)
