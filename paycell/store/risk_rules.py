"""Risk rule sets and named lists in Postgres (migration 0014): every version kept, the one in
force named by the latest activation, list entries removed by marking them, and one counter row
(`risk_config_version`) that every change bumps in its own transaction (triggers), so a worker
knows with one small read whether to reload (paycell.rules.in_force).

Writers take CONFIG_LOCK (a transaction-scoped advisory lock) first: activations then get their
ids in commit order, so "the latest activation" is the one committed last.
"""
from __future__ import annotations

import hashlib

import asyncpg
import msgspec

CONFIG_LOCK = 0x7269736B72756C65  # 'riskrule'

_RULE_SET_COLUMNS = "r.version, r.sha256, r.note, r.created_by, r.created_at, octet_length(r.source) AS source_bytes"
_IN_FORCE = "(SELECT version FROM risk_rule_set_activation ORDER BY activation_id DESC LIMIT 1)"


class Loaded(msgspec.Struct, frozen=True):
    """Everything a worker needs, read in one statement (one snapshot): the counter it matches,
    the rule set in force (None: none was ever activated) and every list's live values."""
    config_version: int
    version: int | None
    source: str | None
    lists: dict[str, frozenset[str]]


def sha256_of(source: str) -> bytes:
    return hashlib.sha256(source.encode("utf-8")).digest()


async def lock_config(conn: asyncpg.Connection) -> None:
    """Serialise configuration writers until the caller's transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", CONFIG_LOCK)


async def config_version(conn: asyncpg.Connection) -> int:
    """The counter every change bumps: one row, one index lookup."""
    return await conn.fetchval("SELECT config_version FROM risk_config_version")


_LOAD = """
SELECT c.config_version, cur.version, cur.source,
       (SELECT coalesce(json_object_agg(l.name, array(
                    SELECT e.value FROM risk_list_entry e
                     WHERE e.list_name = l.name AND e.removed_at IS NULL)), '{}')::text
          FROM risk_list l) AS lists
  FROM risk_config_version c
  LEFT JOIN LATERAL (SELECT a.version, r.source
                       FROM risk_rule_set_activation a LEFT JOIN risk_rule_set r USING (version)
                      ORDER BY a.activation_id DESC LIMIT 1) cur ON true
"""


async def load(conn: asyncpg.Connection) -> Loaded:
    """The counter, the rule set in force and the lists, consistent with each other whatever the
    caller's transaction (one statement sees one snapshot)."""
    row = await conn.fetchrow(_LOAD)
    lists = msgspec.json.decode(row["lists"], type=dict[str, list[str]])
    return Loaded(config_version=row["config_version"], version=row["version"], source=row["source"],
                  lists={name: frozenset(values) for name, values in lists.items()})


# -- rule sets --------------------------------------------------------------------------------

async def insert_rule_set(conn: asyncpg.Connection, *, source: str, note: str,
                          created_by: str) -> tuple[int, bool]:
    """(version, created now). The same text is stored once: pushing it again names its version.
    Call under lock_config."""
    digest = sha256_of(source)
    version = await conn.fetchval(
        """INSERT INTO risk_rule_set (source, sha256, note, created_by) VALUES ($1, $2, $3, $4)
           ON CONFLICT (sha256) DO NOTHING RETURNING version""", source, digest, note, created_by)
    if version is not None:
        return version, True
    return await conn.fetchval("SELECT version FROM risk_rule_set WHERE sha256 = $1", digest), False


async def in_force_version(conn: asyncpg.Connection) -> int | None:
    """The version of the latest activation; None when none was ever activated (the default file)."""
    return await conn.fetchval(f"SELECT {_IN_FORCE}")


async def activate(conn: asyncpg.Connection, version: int, *, activated_by: str) -> bool | None:
    """Put `version` in force (0: the rule file); True when activated now, False when it already
    was (nothing written), None when there is no such version. Call under lock_config."""
    row = await conn.fetchrow(
        f"SELECT EXISTS (SELECT FROM risk_rule_set WHERE version = $1) AS known, {_IN_FORCE} AS current", version)
    if not row["known"] and version != 0:
        return None
    if (row["current"] or 0) == version:
        return False
    await conn.execute("INSERT INTO risk_rule_set_activation (version, activated_by) VALUES ($1, $2)",
                       version or None, activated_by)
    return True


async def rule_set(conn: asyncpg.Connection, version: int) -> asyncpg.Record | None:
    """One version with its source and whether it is in force."""
    return await conn.fetchrow(
        f"""SELECT {_RULE_SET_COLUMNS}, r.source, (r.version = {_IN_FORCE}) IS TRUE AS in_force
              FROM risk_rule_set r WHERE r.version = $1""", version)


async def rule_sets(conn: asyncpg.Connection, *, limit: int, before: int | None) -> list[asyncpg.Record]:
    """Versions newest first, keyset-paginated on version (no source: it may be 64 KiB each)."""
    return await conn.fetch(
        f"""SELECT {_RULE_SET_COLUMNS}, (r.version = {_IN_FORCE}) IS TRUE AS in_force
              FROM risk_rule_set r WHERE $1::bigint IS NULL OR r.version < $1
             ORDER BY r.version DESC LIMIT $2""", before, limit)


async def activations(conn: asyncpg.Connection, version: int, *, limit: int) -> list[asyncpg.Record]:
    """Who put `version` in force and when, newest first."""
    return await conn.fetch(
        """SELECT activation_id, version, activated_by, activated_at FROM risk_rule_set_activation
            WHERE version = $1 ORDER BY activation_id DESC LIMIT $2""", version, limit)


async def latest_activation(conn: asyncpg.Connection) -> asyncpg.Record | None:
    """The activation in force with its rule set; None when none was ever activated. An
    activation of the rule file (version 0) has NULL version, source and rule-set columns."""
    return await conn.fetchrow(
        f"""SELECT a.activation_id, a.activated_by, a.activated_at, {_RULE_SET_COLUMNS}, r.source
              FROM risk_rule_set_activation a LEFT JOIN risk_rule_set r USING (version)
             ORDER BY a.activation_id DESC LIMIT 1""")


# -- named lists ------------------------------------------------------------------------------

async def list_kinds(conn: asyncpg.Connection) -> dict[str, str]:
    """Every list's name -> kind."""
    return {r["name"]: r["kind"] for r in await conn.fetch("SELECT name, kind FROM risk_list")}


async def create_list(conn: asyncpg.Connection, *, name: str, kind: str,
                      created_by: str) -> tuple[asyncpg.Record, bool]:
    """(the list, created now). Call under lock_config."""
    created = await conn.fetchval(
        """INSERT INTO risk_list (name, kind, created_by) VALUES ($1, $2, $3)
           ON CONFLICT (name) DO NOTHING RETURNING true""", name, kind, created_by)
    return await get_list(conn, name), bool(created)


_LIST_COLUMNS = """l.name, l.kind, l.created_by, l.created_at,
       (SELECT count(*) FROM risk_list_entry e WHERE e.list_name = l.name AND e.removed_at IS NULL) AS live_entries"""


async def get_list(conn: asyncpg.Connection, name: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {_LIST_COLUMNS} FROM risk_list l WHERE l.name = $1", name)


async def lists(conn: asyncpg.Connection, *, limit: int, after: str | None) -> list[asyncpg.Record]:
    """Lists by name, keyset-paginated on name."""
    return await conn.fetch(
        f"""SELECT {_LIST_COLUMNS} FROM risk_list l WHERE $1::text IS NULL OR l.name > $1
             ORDER BY l.name LIMIT $2""", after, limit)


_ENTRY_COLUMNS = "entry_id, list_name, value, note, added_by, added_at, removed_by, removed_at"


async def entries(conn: asyncpg.Connection, name: str, *, limit: int, before: int | None,
                  include_removed: bool) -> list[asyncpg.Record]:
    """A list's entries newest first (live ones only unless `include_removed`), keyset on entry_id."""
    return await conn.fetch(
        f"""SELECT {_ENTRY_COLUMNS} FROM risk_list_entry
             WHERE list_name = $1 AND ($2::bigint IS NULL OR entry_id < $2) AND ($3 OR removed_at IS NULL)
             ORDER BY entry_id DESC LIMIT $4""", name, before, include_removed, limit)


async def add_entries(conn: asyncpg.Connection, name: str, values: list[str], *, note: str,
                      added_by: str) -> list[str]:
    """Add `values` (already normalised) to list `name`; a value already live stays as it is.
    Returns the values added now. Call under lock_config (so no concurrent add races the index)."""
    rows = await conn.fetch(
        """INSERT INTO risk_list_entry (list_name, value, note, added_by)
           SELECT $1, v, $3, $4 FROM unnest($2::text[]) AS v
           ON CONFLICT (list_name, value) WHERE removed_at IS NULL DO NOTHING
           RETURNING value""", name, values, note, added_by)
    return [r["value"] for r in rows]


async def live_entries(conn: asyncpg.Connection) -> int:
    """Live entries of every list: what each worker holds in memory."""
    return await conn.fetchval("SELECT count(*) FROM risk_list_entry WHERE removed_at IS NULL")


async def remove_entry(conn: asyncpg.Connection, name: str, value: str, *,
                       removed_by: str) -> asyncpg.Record | None:
    """Mark the live entry of `value` removed and return it; when none is live, the entry removed
    last (removing again answers the same); None when the list never held the value."""
    row = await conn.fetchrow(
        f"""UPDATE risk_list_entry SET removed_by = $3, removed_at = now()
             WHERE list_name = $1 AND value = $2 AND removed_at IS NULL RETURNING {_ENTRY_COLUMNS}""",
        name, value, removed_by)
    if row is not None:
        return row
    return await conn.fetchrow(
        f"""SELECT {_ENTRY_COLUMNS} FROM risk_list_entry WHERE list_name = $1 AND value = $2
             ORDER BY entry_id DESC LIMIT 1""", name, value)
