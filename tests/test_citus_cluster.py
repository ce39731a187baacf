"""`paycell citus distribute` on a real Citus cluster: the catalog afterwards is what
paycell/store/distribution.py says, and a second run changes nothing.

The cluster is the one whose coordinator answers at PAYCELL_TEST_CITUS_URL (default
postgresql://postgres@127.0.0.1:5433/postgres), with the workers registered in that database (the
operator's set-up, docs/scale.md "Running the suite against Citus"). The test makes a database of
its own on every node and drops it after. It skips, saying why, when there is no such cluster. The
whole suite runs on Citus with PAYCELL_TEST_CITUS_WORKERS (tests/conftest.py)."""
from __future__ import annotations

import os

import asyncpg
import pytest

from paycell.citus import cluster
from paycell.config import load
from paycell.config.settings import database_name, with_database
from paycell.store.distribution import DISTRIBUTED, REFERENCE
from paycell.store.migrate import migrate

CITUS_URL = os.environ.get("PAYCELL_TEST_CITUS_URL", "postgresql://postgres@127.0.0.1:5433/postgres")


async def _workers() -> list[str]:
    """The cluster's workers as host:port; skips when there is no Citus cluster at CITUS_URL."""
    try:
        conn = await asyncpg.connect(CITUS_URL, timeout=3)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"Citus tests skipped: no server at {CITUS_URL} ({type(exc).__name__})")
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'citus'"):
            pytest.skip(f"Citus tests skipped: {CITUS_URL} has no citus extension")
        rows = await conn.fetch("SELECT nodename, nodeport FROM pg_dist_node WHERE groupid <> 0 AND isactive")
    finally:
        await conn.close()
    if not rows:
        pytest.skip(f"Citus tests skipped: the coordinator at {CITUS_URL} has no worker")
    return [f"{r['nodename']}:{r['nodeport']}" for r in rows]


async def _drop_everywhere(url: str, workers: list[str], name: str) -> None:
    for node_admin in [with_database(url, "postgres")] + [
            with_database(cluster.node_url(url, w), "postgres") for w in workers]:
        conn = await asyncpg.connect(node_admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture
async def citus_settings(settings):
    workers = await _workers()
    name = database_name(settings.admin_database_url).removesuffix("_test") + "_citus_test"
    url = with_database(CITUS_URL, name)
    await _drop_everywhere(url, workers, name)
    citus = load(admin_database_url=url, database_url="")
    await migrate(citus)
    yield citus, workers
    await _drop_everywhere(url, workers, name)


async def test_distribute_places_every_table_as_the_layout_says(citus_settings):
    citus, workers = citus_settings
    lines: list[str] = []
    steps = await cluster.distribute(citus, workers, shard_count=4, echo=lines.append)
    assert len(lines) >= len(steps)
    conn = await asyncpg.connect(citus.admin_database_url)
    try:
        rows = {r["tbl"]: r for r in await conn.fetch("""
            SELECT logicalrelid::regclass::text AS tbl, partmethod::text AS method, colocationid,
                   column_to_column_name(logicalrelid, partkey) AS col
              FROM pg_dist_partition""")}
        assert {t for t, r in rows.items() if r["method"] == "n"} == REFERENCE
        colocations = set()
        for group, (column, tables) in DISTRIBUTED.items():
            assert {t: (rows[t]["method"], rows[t]["col"]) for t in tables} == {t: ("h", column) for t in tables}
            ids = {rows[t]["colocationid"] for t in tables}
            assert len(ids) == 1, f"group {group} spans colocation groups {ids}"
            colocations |= ids
        assert len(colocations) == len(DISTRIBUTED)
        shards_on = await conn.fetchval("""
            SELECT count(DISTINCT p.nodeport) FROM pg_dist_shard_placement p JOIN pg_dist_shard s USING (shardid)
              JOIN pg_dist_partition d USING (logicalrelid) WHERE d.partmethod = 'h'""")
        assert shards_on == len(workers)  # the distributed tables' shards are on the workers
    finally:
        await conn.close()
    again = await cluster.distribute(citus, workers, echo=lines.append)
    assert [s for s in again if "_table(" in s[0]] == []
