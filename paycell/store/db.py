"""One asyncpg pool per process, always as the least-privileged application role."""
from __future__ import annotations

import asyncpg
import msgspec

from paycell.config import Settings


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb in and out as msgspec-encoded bytes/objects: fast and float-free for our payloads.
    await conn.set_type_codec("jsonb", schema="pg_catalog", format="binary",
                              encoder=lambda v: b"\x01" + msgspec.json.encode(v),
                              decoder=lambda b: msgspec.json.decode(b[1:]))


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool connections carry no session state (no SET, LISTEN, advisory lock or cursor outlives
    a transaction), so the default reset query on every release is a wasted round trip. asyncpg
    still rolls back a transaction left open before calling this."""


class BoundedWaitPool(asyncpg.Pool):
    """A pool whose `acquire` (and so `fetch`, `execute` ... on the pool) waits at most
    `acquire_timeout_s` for a free connection, then raises TimeoutError. Without it an exhausted
    pool queues every request forever; the web answers the TimeoutError with 503 + Retry-After."""

    def __init__(self, *args, acquire_timeout_s: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.acquire_timeout_s = acquire_timeout_s

    def acquire(self, *, timeout: float | None = None):
        return super().acquire(timeout=self.acquire_timeout_s if timeout is None else timeout)


async def create_pool(settings: Settings, *, size_max: int | None = None, url: str | None = None,
                      acquire_timeout_s: float | None = None) -> asyncpg.Pool:
    """The app role's pool; with `acquire_timeout_s`, a BoundedWaitPool (the web's)."""
    size_max = size_max or settings.db_pool_size_max
    options = dict(
        min_size=min(settings.db_pool_size_min, size_max),
        max_size=size_max,
        init=_init_connection,
        reset=_keep_session,
        statement_cache_size=settings.db_statement_cache_entries_max,
        max_cacheable_statement_size=settings.db_statement_cache_statement_bytes_max,
        server_settings={"statement_timeout": str(settings.db_statement_timeout_ms),
                         "application_name": "paycell"},
    )
    if acquire_timeout_s is None:
        return await asyncpg.create_pool(url or settings.app_database_url, **options)
    # asyncpg.create_pool builds a Pool with these same defaults; it takes no pool class.
    return await BoundedWaitPool(url or settings.app_database_url, acquire_timeout_s=acquire_timeout_s,
                                 max_queries=50_000, max_inactive_connection_lifetime=300.0, loop=None,
                                 connection_class=asyncpg.Connection, record_class=asyncpg.Record, **options)


async def connect(url: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(url)
    await _init_connection(conn)
    return conn


async def ping(pool: asyncpg.Pool) -> None:
    """Raises when the database does not answer."""
    await pool.fetchval("SELECT 1")
