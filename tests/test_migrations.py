"""Migrations: applied once, in order, safely from several processes at once, and never silently
re-applied or skipped when a file changed after it ran."""
from __future__ import annotations

import asyncio
import os
import shutil
import sys
import uuid
from pathlib import Path

import asyncpg
import msgspec
import pytest

from paycell.config.settings import with_database
from paycell.store import migrate as migrate_mod
from paycell.store.ledger_check import check
from paycell.store.migrate import migrate, migrations

ALL_VERSIONS = [v for v, _, _ in migrations()]


def _paycell_command() -> str:
    """The `paycell` console script of the interpreter running the tests."""
    beside = Path(sys.executable).parent / "paycell"
    found = str(beside) if beside.exists() else shutil.which("paycell")
    assert found, "the paycell console script is not installed (pip install -e .)"
    return found


@pytest.fixture
async def fresh(settings):
    """Settings for a database that does not exist yet; dropped again afterwards."""
    name = f"paycell_test_mig_{uuid.uuid4().hex[:12]}"
    url = with_database(settings.admin_database_url, name)
    fresh_settings = msgspec.structs.replace(settings, admin_database_url=url, database_url="")
    yield fresh_settings
    admin = await asyncpg.connect(with_database(settings.admin_database_url, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _recorded_versions(settings) -> list[int]:
    conn = await asyncpg.connect(settings.admin_database_url)
    try:
        return [r["version"] for r in await conn.fetch("SELECT version FROM schema_migration ORDER BY version")]
    finally:
        await conn.close()


async def _ledger_is_usable_by_the_app_role(settings) -> None:
    conn = await asyncpg.connect(settings.app_database_url)
    try:
        assert await conn.fetchval("SELECT current_user") == settings.app_role
        report = await check(conn)
        assert report.ok and report.transactions == 0
    finally:
        await conn.close()


async def test_migrating_a_fresh_database_creates_it_and_applies_every_version_once(fresh):
    assert await migrate(fresh) == ALL_VERSIONS
    assert await _recorded_versions(fresh) == ALL_VERSIONS
    await _ledger_is_usable_by_the_app_role(fresh)


async def test_migrating_twice_is_a_no_op(fresh, migrated):
    assert await migrate(fresh) == ALL_VERSIONS
    assert await migrate(fresh) == []
    assert await _recorded_versions(fresh) == ALL_VERSIONS
    # The shared test database, migrated at session start, is up to date too.
    assert await migrate(migrated) == []


async def test_two_migrate_processes_at_once_on_a_fresh_database_both_succeed(fresh):
    env = {k: v for k, v in os.environ.items() if k != "PAYCELL_DATABASE_URL"}
    env["PAYCELL_ADMIN_DATABASE_URL"] = fresh.admin_database_url
    env["PAYCELL_APP_ROLE"] = fresh.app_role
    procs = [await asyncio.create_subprocess_exec(_paycell_command(), "migrate", env=env,
                                                  stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
             for _ in range(2)]
    outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), timeout=60)
    for proc, (out, _) in zip(procs, outputs):
        assert proc.returncode == 0, out.decode()
    said = sorted(out.decode().strip().splitlines()[-1] for out, _ in outputs)
    # One of them applied everything and the other found the schema up to date.
    assert said == sorted([f"migrations applied: {ALL_VERSIONS}", "schema up to date"]), said
    assert await _recorded_versions(fresh) == ALL_VERSIONS
    await _ledger_is_usable_by_the_app_role(fresh)


async def test_concurrent_migrations_in_one_process_apply_each_version_once(fresh):
    results = await asyncio.wait_for(asyncio.gather(*(migrate(fresh) for _ in range(4))), timeout=60)
    assert sorted(results) == [[], [], [], ALL_VERSIONS]
    assert await _recorded_versions(fresh) == ALL_VERSIONS


async def test_a_migration_changed_after_it_was_applied_is_refused(migrated, monkeypatch):
    original = migrations()
    altered = [(v, name, sql + "\n-- edited after the fact\n" if v == 1 else sql) for v, name, sql in original]
    monkeypatch.setattr(migrate_mod, "migrations", lambda: altered)
    with pytest.raises(RuntimeError, match=r"0001_ledger changed after it was applied"):
        await migrate(migrated)
    # The refusal released the migration lock: the unchanged files still migrate (to a no-op).
    monkeypatch.setattr(migrate_mod, "migrations", lambda: original)
    assert await asyncio.wait_for(migrate(migrated), timeout=10) == []


async def test_a_changed_migration_stops_the_run_before_newer_ones_are_applied(fresh, monkeypatch):
    assert await migrate(fresh) == ALL_VERSIONS
    original = migrations()
    newer = len(original) + 1
    altered = [(v, name, sql + "\n-- edited\n" if v == 1 else sql) for v, name, sql in original]
    altered.append((newer, "should_not_run", "CREATE TABLE should_not_run (id int);"))
    monkeypatch.setattr(migrate_mod, "migrations", lambda: altered)
    with pytest.raises(RuntimeError, match="changed after it was applied"):
        await migrate(fresh)
    assert await _recorded_versions(fresh) == ALL_VERSIONS
    conn = await asyncpg.connect(fresh.admin_database_url)
    try:
        assert await conn.fetchval("SELECT to_regclass('should_not_run')") is None
    finally:
        await conn.close()


async def test_a_failing_migration_is_rolled_back_and_not_recorded(fresh, monkeypatch):
    assert await migrate(fresh) == ALL_VERSIONS
    newer = len(ALL_VERSIONS) + 1
    broken = migrations() + [(newer, "broken", "CREATE TABLE half_done (id int); SELECT 1/0;")]
    monkeypatch.setattr(migrate_mod, "migrations", lambda: broken)
    with pytest.raises(asyncpg.DivisionByZeroError):
        await migrate(fresh)
    assert await _recorded_versions(fresh) == ALL_VERSIONS
    conn = await asyncpg.connect(fresh.admin_database_url)
    try:
        assert await conn.fetchval("SELECT to_regclass('half_done')") is None
    finally:
        await conn.close()
