"""Preparing a Citus cluster for paycell and applying the plan (paycell/citus/plan.py).

The coordinator is the admin URL's server; each worker is `host:port`, reached with the admin URL's
user and password. On each worker the database is created when missing, with the `citus` extension
and paycell's two roles (the coordinator connects to the workers as the app role; roles are not
propagated to a database whose extension came later). Then the coordinator gets the extension, its
own host and the workers, and the plan runs statement by statement, each printed first. Triggers on
distributed tables need `citus.enable_unsafe_triggers` (set for the database): paycell's triggers
touch only the row's own shard or colocated shards, which is what makes them safe (docs/scale.md).
"""
from __future__ import annotations

from typing import Callable
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from paycell.citus import plan
from paycell.config import Settings
from paycell.config.settings import database_name, with_database
from paycell.errors import PaycellError
from paycell.store import migrate


class CitusUnavailable(PaycellError):
    code = "citus_unavailable"


def node_url(url: str, node: str) -> str:
    """`url` pointed at `node` (host:port), same user, password and database."""
    host, _, port = node.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"a worker is host:port, got {node!r}")
    parts = urlsplit(url)
    auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{auth}{host}:{port}"))


async def _ready_node(conn: asyncpg.Connection, where: str) -> None:
    if not await conn.fetchval("SELECT 1 FROM pg_available_extensions WHERE name = 'citus'"):
        raise CitusUnavailable(f"{where}: the citus extension is not installed on this server")
    if "citus" not in (await conn.fetchval("SHOW shared_preload_libraries")).split(","):
        raise CitusUnavailable(f"{where}: citus is not in shared_preload_libraries")
    await conn.execute("CREATE EXTENSION IF NOT EXISTS citus")


async def prepare_worker(settings: Settings, node: str) -> None:
    url = node_url(settings.admin_database_url, node)
    admin = await asyncpg.connect(with_database(url, "postgres"))
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database_name(url)):
            await admin.execute(f'CREATE DATABASE "{database_name(url)}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(url)
    try:
        await _ready_node(conn, node)
        await migrate.ensure_role(conn, settings)
    finally:
        await conn.close()


async def distribute(settings: Settings, workers: list[str], *, shard_count: int | None = None,
                     echo: Callable[[str], None] = print) -> list[plan.Step]:
    """Prepare `workers`, add them, and distribute the migrated schema; returns the steps it ran."""
    for node in workers:
        await prepare_worker(settings, node)
    conn = await asyncpg.connect(settings.admin_database_url)
    try:
        await _ready_node(conn, "coordinator")
        # Citus creates and alters shards connecting to the workers as the table's owner, and keeps
        # a role the same on every node: the owner logs in (pg_hba.conf must admit it from the
        # coordinator's address only, with a password in pg_dist_authinfo; docs/scale.md).
        await conn.execute(f'ALTER ROLE "{settings.owner_role}" LOGIN')
        await conn.execute(f'ALTER DATABASE "{database_name(settings.admin_database_url)}" '
                           "SET citus.enable_unsafe_triggers = on")
        await conn.execute("SET citus.enable_unsafe_triggers = on")
        if shard_count is not None:
            await conn.execute("SELECT set_config('citus.shard_count', $1, false)", str(shard_count))
        parts = urlsplit(settings.admin_database_url)
        if not await conn.fetchval("SELECT 1 FROM pg_dist_node WHERE groupid = 0"):
            await conn.execute("SELECT citus_set_coordinator_host($1, $2)", parts.hostname or "localhost",
                               parts.port or 5432)
        for node in workers:
            host, _, port = node.rpartition(":")
            if not await conn.fetchval("SELECT 1 FROM pg_dist_node WHERE nodename = $1 AND nodeport = $2",
                                       host, int(port)):
                echo(f"adding worker {node}")
                await conn.execute("SELECT citus_add_node($1, $2)", host, int(port))
        references, done = await plan.read(conn)
        await conn.execute("SET citus.propagate_set_commands = 'local'")
        steps = plan.steps(references, done)
        for sql, args in steps:
            echo(f"{sql.split('(')[0].removeprefix('SELECT ')} {' '.join(args)}")
            async with conn.transaction():
                # Rows already there are copied into the new shards: that is no new write, so no
                # trigger fires for them (a trigger writing elsewhere mid-copy is what Citus refuses).
                await conn.execute("SET LOCAL session_replication_role = replica")
                await conn.execute(sql, *args)
        granted = await grant_columns_on_shards(conn)
        echo(f"column grants copied to the shards: {granted}")
        return steps
    finally:
        await conn.close()


# Each column-level grant of a distributed or reference table, as a command for its shards (%s). An
# INSERT grant also covers the columns with a default: Citus computes defaults (now(), an identity's
# next value) on the coordinator and names those columns in the shard's INSERT.
_COLUMN_GRANTS = """
WITH granted AS (
    SELECT c.oid AS rel, x.privilege_type AS priv, r.rolname AS role, a.attnum, a.attname
      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
      JOIN pg_dist_partition d ON d.logicalrelid = c.oid
     CROSS JOIN LATERAL aclexplode(a.attacl) x JOIN pg_roles r ON r.oid = x.grantee
     WHERE a.attacl IS NOT NULL AND NOT a.attisdropped
), defaulted AS (
    SELECT DISTINCT g.rel, g.priv, g.role, a.attnum, a.attname
      FROM granted g JOIN pg_attribute a ON a.attrelid = g.rel
     WHERE g.priv = 'INSERT' AND a.attnum > 0 AND NOT a.attisdropped AND (a.atthasdef OR a.attidentity <> '')
)
SELECT rel::regclass::text AS tbl,
       format('GRANT %s (%s) ON %%s TO %I', priv, string_agg(quote_ident(attname), ', ' ORDER BY attnum), role)
           AS command
  FROM (SELECT * FROM granted UNION SELECT * FROM defaulted) AS cols
 GROUP BY rel, priv, role
 ORDER BY 1, 2"""


async def grant_columns_on_shards(conn: asyncpg.Connection) -> int:
    """Copy every column-level grant (the app role may INSERT only some columns of the event log,
    UPDATE only some of an order) onto the shards, which Citus does not do: without them the app
    role could not write at all. Re-run after shards move or split (`paycell citus distribute`
    does it on every run). Returns how many grants were copied."""
    count = 0
    for row in await conn.fetch(_COLUMN_GRANTS):
        results = await conn.fetch("SELECT nodename, nodeport, success, result "
                                   "FROM run_command_on_placements($1::regclass, $2)", row["tbl"], row["command"])
        failed = [f"{r['nodename']}:{r['nodeport']}: {r['result']}" for r in results if not r["success"]]
        if failed:
            raise RuntimeError(f"{row['command']} on {row['tbl']}: {'; '.join(failed)}")
        count += 1
    return count
