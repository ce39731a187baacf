"""What the tests of stored rule sets and lists share (tests/rules and tests/api). No tests here.

The rule set in force is global to the test database, so every test that changes it restores the
one in force before (`restore_in_force`), and the rule sets tests push behave as the default file
does (its text plus a rule that cannot fire and a unique comment): whatever order tests run in,
no other test meets rules it did not expect. Lists are made per test under unique names, so the
four block lists stay empty.
"""
from __future__ import annotations

import uuid

import asyncpg
import pytest

from paycell.rules import changes
from paycell.rules.check import default_rules_text
from paycell.store import risk_rules as store


def harmless_rules(tag: str | None = None, *, extra: str = "") -> str:
    """The default file plus a rule that never fires (and `extra`), unique by `tag`."""
    tag = tag or uuid.uuid4().hex[:12]
    return (default_rules_text() + f"\n# test rule set {tag}\n"
            f'review "test {tag}" when amount > 99999999.99 USD and user = "nobody-{tag}"\n' + extra)


def new_list_name(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


@pytest.fixture
async def restore_in_force(pool, migrated):
    """Put back the rule set in force when the test started (version 0, the rule file, when none was:
    each worker's own PAYCELL_RISK_RULES_FILE)."""
    async with pool.acquire() as conn:
        before = await store.in_force_version(conn)
    yield before
    async with pool.acquire() as conn, conn.transaction():
        await changes.activate(conn, before or 0, by="tests")


@pytest.fixture
async def admin_conn(migrated):
    """A superuser connection (the admin URL): for what only a bypass of the API can set up."""
    conn = await asyncpg.connect(migrated.admin_database_url)
    yield conn
    await conn.close()


async def push(pool, source: str, *, activate: bool = True, by: str = "tests") -> changes.Pushed:
    async with pool.acquire() as conn, conn.transaction():
        return await changes.push(conn, source, note="", activate=activate, by=by)


async def make_list(pool, kind: str, name: str | None = None) -> str:
    name = name or new_list_name()
    async with pool.acquire() as conn, conn.transaction():
        await changes.create_list(conn, name, kind, by="tests")
    return name
