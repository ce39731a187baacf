"""Numbered SQL migrations, applied in order by the schema owner, recorded in a table, and
serialised with an advisory lock so that two `paycell migrate` processes at once are safe."""
from __future__ import annotations

import contextlib
import hashlib
import re
from importlib import resources

import asyncpg
import structlog

from paycell.config import Settings
from paycell.config.settings import database_name, with_database

log = structlog.get_logger("paycell.migrate")

_LOCK_ID = 0x70617963656C6C  # 'paycell'
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_ROLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Migration 0008 hands every object to the owner role (it must run as the admin to do so);
# every later migration runs as the owner, so what it creates is the owner's too.
OWNED_FROM = 9


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every migration file, in order."""
    found = []
    for entry in resources.files("paycell.store").joinpath("migrations").iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append((int(m.group(1)), m.group(2), entry.read_text()))
    found.sort()
    versions = [v for v, _, _ in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..N without gaps, found {versions}")
    return found


async def ensure_database(settings: Settings) -> None:
    """Create the target database when it does not exist yet (a newcomer's first run)."""
    url = settings.admin_database_url
    try:
        conn = await asyncpg.connect(url)
    except asyncpg.InvalidCatalogNameError:
        admin = await asyncpg.connect(with_database(url, "postgres"))
        try:
            # A concurrent migrate may create it first: that is as good.
            with contextlib.suppress(asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                await admin.execute(f'CREATE DATABASE "{database_name(url)}"')
                log.info("database.created", database=database_name(url))
        finally:
            await admin.close()
    else:
        await conn.close()


async def _create_role(conn: asyncpg.Connection, role: str, setting: str, options: str) -> None:
    if not _ROLE.match(role):
        raise ValueError(f"{setting} must be a lower-case identifier, got {role!r}")
    exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
    if not exists:
        # Roles are cluster-wide: another database's migrate may have made it a moment ago.
        with contextlib.suppress(asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
            await conn.execute(f'CREATE ROLE "{role}" {options}')


async def ensure_role(conn: asyncpg.Connection, settings: Settings) -> None:
    """The app role (LOGIN) and the schema owner role (NOLOGIN, never a superuser)."""
    if settings.owner_role == settings.app_role:
        raise ValueError("PAYCELL_OWNER_ROLE must differ from PAYCELL_APP_ROLE")
    role = settings.app_role
    await _create_role(conn, role, "PAYCELL_APP_ROLE", "LOGIN")
    owner = settings.owner_role
    await _create_role(conn, owner, "PAYCELL_OWNER_ROLE", "NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
    if await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = $1", owner):
        raise RuntimeError(f"the owner role {owner!r} is a superuser: the ledger's rules would not bind it")
    if not await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") and \
            not await conn.fetchval("SELECT pg_has_role(current_user, $1, 'MEMBER')", owner):
        # A non-superuser admin must be a member to SET ROLE to the owner.
        await conn.execute(f'GRANT "{owner}" TO CURRENT_USER')
    if settings.app_role_password:
        stmt = await conn.fetchval("SELECT format('ALTER ROLE %I PASSWORD %L', $1::text, $2::text)",
                                   role, settings.app_role_password)
        await conn.execute(stmt)


async def migrate(settings: Settings) -> list[int]:
    """Apply pending migrations; returns the versions applied (empty when up to date)."""
    await ensure_database(settings)
    conn = await asyncpg.connect(settings.admin_database_url)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
        try:
            await ensure_role(conn, settings)
            await conn.execute("""
                CREATE TABLE IF NOT EXISTS schema_migration (
                    version integer PRIMARY KEY, name text NOT NULL, sha256 text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now())""")
            done = {r["version"]: r["sha256"] for r in await conn.fetch("SELECT version, sha256 FROM schema_migration")}
            applied = []
            for version, name, sql in migrations():
                digest = hashlib.sha256(sql.encode()).hexdigest()
                if version in done:
                    if done[version] != digest:
                        raise RuntimeError(f"migration {version:04d}_{name} changed after it was applied; "
                                           "add a new migration instead")
                    continue
                async with conn.transaction():
                    if version >= OWNED_FROM:
                        await conn.execute(f'SET LOCAL ROLE "{settings.owner_role}"')
                    await conn.execute(sql.replace("{app_role}", f'"{settings.app_role}"')
                                       .replace("{owner_role}", f'"{settings.owner_role}"'))
                    await conn.execute("RESET ROLE")
                    await conn.execute("INSERT INTO schema_migration (version, name, sha256) VALUES ($1, $2, $3)",
                                       version, name, digest)
                log.info("migration.applied", version=version, name=name)
                applied.append(version)
            return applied
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
    finally:
        await conn.close()
