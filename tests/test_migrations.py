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

ALL_MIGRATIONS = migrations()
ALL_VERSIONS = [v for v, _, _ in ALL_MIGRATIONS]


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


async def test_migrations_after_0008_run_as_the_owner_role(fresh, monkeypatch):
    """A colleague's later migration creates a table and grants it to the app: the table is the
    owner role's (not the superuser's), and the app role can use what was granted."""
    newer = len(ALL_VERSIONS) + 1
    sql = """CREATE TABLE later_table (user_id text NOT NULL, n integer NOT NULL, made_by text NOT NULL,
                                       PRIMARY KEY (user_id, n));
             INSERT INTO later_table VALUES ('u', 1, current_user);
             GRANT SELECT, INSERT ON later_table TO {app_role};
             REVOKE ALL ON later_table FROM {owner_role};  -- the owner may even lock itself out"""
    monkeypatch.setattr(migrate_mod, "migrations", lambda: [*migrations(), (newer, "later", sql)])
    assert await migrate(fresh) == [*ALL_VERSIONS, newer]
    admin = await asyncpg.connect(fresh.admin_database_url)
    try:
        row = await admin.fetchrow("""SELECT pg_get_userbyid(c.relowner) AS owner, t.made_by
                                        FROM pg_class c, later_table t WHERE c.relname = 'later_table'""")
        assert (row["owner"], row["made_by"]) == (fresh.owner_role, fresh.owner_role)
        # The migration runner is back to itself afterwards (recording needs no owner grant).
        assert await admin.fetchval("SELECT current_user") != fresh.owner_role
    finally:
        await admin.close()
    app = await asyncpg.connect(fresh.app_database_url)
    try:
        await app.execute("INSERT INTO later_table VALUES ('u', 2, 'app')")
        assert await app.fetchval("SELECT count(*) FROM later_table") == 2
    finally:
        await app.close()


async def test_ledger_check_reports_postings_not_tied_to_a_matching_order(fresh):
    """What only a superuser (or a restored dump, or the schema before 0008) can write: a balanced
    posting tied to no order, one whose amount or kind does not match its order, and an order
    whose money fields differ from its request. Done in a throwaway database."""
    from paycell.store.db import connect
    from tests.helpers import new_order, settle_payin

    await migrate(fresh)
    app = await connect(fresh.app_database_url)
    admin = await asyncpg.connect(fresh.admin_database_url)
    try:
        async with app.transaction():
            legit = await new_order(app, "alice", "payin", 10_00)
            await settle_payin(app, legit)
        assert (await check(app)).ok
        paid = await new_order(app, "bob", "payin", 3_00)
        wrong_kind = await new_order(app, "carol", "payin", 3_00)
        clearing, wallet = (await app.fetchval("SELECT ledger_account_ids('psp_clearing', 'test', 'USD', 1)"))[0], \
            (await app.fetchval("SELECT ledger_account_ids('user_wallet', 'mallory', 'USD', 1)"))[0]

        async def forge(user, key, kind, order_id, amount_minor):
            async with admin.transaction():
                txn = await admin.fetchval(
                    "INSERT INTO ledger_transaction (user_id, idempotency_key, kind, payment_order_id) "
                    "VALUES ($1, $2, $3, $4) RETURNING transaction_id",
                    user, key, kind, order_id and uuid.UUID(order_id))
                await admin.execute(
                    "INSERT INTO ledger_entry (transaction_id, user_id, account_id, currency, amount_minor) "
                    "VALUES ($1, 'mallory', $2, 'USD', $4), ($1, 'system:0', $3, 'USD', -$4::bigint)",
                    txn, wallet, clearing, amount_minor)

        await forge("mallory", "mint", "payin_settle", None, 1_000_000_00)
        await forge("bob", f"{paid}:settle", "payin_settle", paid, 3_01)
        await forge("carol", f"{wrong_kind}:reserve", "payout_reserve", wrong_kind, 3_00)
        async with admin.transaction():
            await admin.execute("SET LOCAL session_replication_role = replica")  # past the order guard
            await admin.execute("UPDATE payment_order SET amount_minor = 7 WHERE payment_order_id = $1",
                                uuid.UUID(wrong_kind))
        report = await check(app)
    finally:
        await app.close()
        await admin.close()
    kinds = sorted({p.split(":")[0] for p in report.problems})
    assert kinds == ["order differs from its request", "posting kind", "posting legs", "posting without order"], \
        report.problems
    assert not any(legit in p for p in report.problems)


async def test_0027_gives_the_ledger_and_the_event_log_their_users_in_place(fresh, monkeypatch):
    """A ledger posted before 0027 (pay-in, transfer, pay-out reserve, through the former
    post_order) migrates in place: each account carries its owner or its slice's owner key, each
    transaction its order's user, each entry its account's user; the invariants hold; a step
    posted before the migration replays (same transaction, nothing written) when posted again
    with the user, and new postings go on."""
    from paycell.store import ledger, payments
    from paycell.store.db import connect
    from tests.helpers import new_order

    before = [m for m in migrations() if m[0] < 27]
    monkeypatch.setattr(migrate_mod, "migrations", lambda: before)
    assert await migrate(fresh) == [v for v, _, _ in before]
    app = await connect(fresh.app_database_url)
    try:
        async def old_post(order_id: str, step: str) -> int:  # the signature before 0027
            rows = await app.fetch("SELECT * FROM post_order($1::uuid, $2, 4)", order_id, step)
            return rows[0]["transaction_id"]

        async with app.transaction():
            payin = await new_order(app, "alice", "payin", 10_00)
            order = await payments.lock_order(app, "alice", payin)
            await payments.move(app, order, "psp_submitting", event="order.psp_submitting", psp="test", attempt=1)
            settled = await old_post(payin, "settle")
            await payments.move(app, order, "completed", event="order.posted", ledger_updated=True,
                                wallet_updated=True)
        async with app.transaction():
            transfer = await new_order(app, "alice", "transfer", 3_00, to_user="bob")
            await old_post(transfer, "transfer")
            await payments.move(app, await payments.lock_order(app, "alice", transfer), "completed", event="order.posted",
                                ledger_updated=True, wallet_updated=True)
        async with app.transaction():
            payout = await new_order(app, "alice", "payout", 2_00)
            await old_post(payout, "reserve")
        events_before = await app.fetchval("SELECT count(*) FROM event")

        monkeypatch.setattr(migrate_mod, "migrations", lambda: [*before, *(m for m in ALL_MIGRATIONS if m[0] >= 27)])
        assert await migrate(fresh) == [v for v in ALL_VERSIONS if v >= 27]

        report = await check(app)
        assert report.ok and report.transactions == 3 and report.entries == 6, report.problems
        accounts = await app.fetch("SELECT kind, owner_id, slice, user_id FROM account")
        assert accounts and all(a["user_id"] == (a["owner_id"] if a["kind"] in ("user_wallet", "payout_hold")
                                                 else f"system:{a['slice']}") for a in accounts)
        assert sorted(r["user_id"] for r in await app.fetch("SELECT user_id FROM ledger_transaction")) \
            == ["alice"] * 3
        assert await app.fetchval("""SELECT count(*) FROM ledger_entry e JOIN account a USING (user_id, account_id)
                                      WHERE e.currency = a.currency""") == 6
        assert await app.fetchval("SELECT count(*) FROM event") == events_before

        async with app.transaction():
            again = await ledger.post_order(app, "alice", payin, "settle", system_slices=4)
            order = await payments.lock_order(app, "alice", payout)
            await payments.move(app, order, "psp_submitting", event="order.psp_submitting", psp="test", attempt=1)
            await ledger.post_order(app, "alice", payout, "settle", system_slices=4)
            await payments.move(app, order, "completed", event="order.posted", ledger_updated=True,
                                wallet_updated=True)
        assert again.replayed and again.transaction_id == settled
        report = await check(app)
        assert report.ok and report.transactions == 4, report.problems
        wallets = {r["code"]: r["balance_minor"] for r in await app.fetch(
            "SELECT code, balance_minor FROM account WHERE kind IN ('user_wallet', 'payout_hold')")}
        assert wallets == {"wallet:alice": 5_00, "wallet:bob": 3_00, "payout_hold:alice": 0}
    finally:
        await app.close()


async def test_ledger_check_reports_rows_whose_user_is_not_their_orders_or_accounts(fresh):
    """What only a superuser (or a restored dump) can write since 0027: a step's key posted again
    under another user than its order's (unique per user, so the database takes it: the checker
    must not), and an entry naming its account under another user (written with the triggers
    off, as a replica would)."""
    from paycell.store.db import connect
    from tests.helpers import new_order, settle_payin

    await migrate(fresh)
    app = await connect(fresh.app_database_url)
    admin = await asyncpg.connect(fresh.admin_database_url)
    try:
        async with app.transaction():
            paid = await new_order(app, "bob", "payin", 4_00)
            posting = await settle_payin(app, paid)
        assert (await check(app)).ok
        wallet = next(e.account_id for e in posting.entries if e.amount_minor > 0)
        clearing = next(e.account_id for e in posting.entries if e.amount_minor < 0)
        clearing_owner = await app.fetchval("SELECT user_id FROM account WHERE account_id = $1", clearing)
        async with admin.transaction():
            txn = await admin.fetchval(
                "INSERT INTO ledger_transaction (user_id, idempotency_key, kind, payment_order_id) "
                "VALUES ('mallory', $1, 'payin_settle', $2) RETURNING transaction_id",
                f"{paid}:settle", uuid.UUID(paid))
            await admin.execute(
                "INSERT INTO ledger_entry (transaction_id, user_id, account_id, currency, amount_minor) "
                "VALUES ($1, 'bob', $2, 'USD', 400), ($1, $3, $4, 'USD', -400)", txn, wallet, clearing_owner, clearing)
        async with admin.transaction():
            await admin.execute("SET LOCAL session_replication_role = replica")  # no trigger: no balance moves
            txn = await admin.fetchval(
                "INSERT INTO ledger_transaction (user_id, idempotency_key, kind, payment_order_id) "
                "VALUES ('bob', $1, 'payin_settle', $2) RETURNING transaction_id", f"{paid}:shadow", uuid.UUID(paid))
            await admin.execute(
                "INSERT INTO ledger_entry (transaction_id, user_id, account_id, currency, amount_minor, "
                "balance_after_minor) VALUES ($1, 'mallory', $2, 'USD', 1, 1), ($1, 'bob', $2, 'USD', -1, 0)",
                txn, wallet)
        report = await check(app)
    finally:
        await app.close()
        await admin.close()
    kinds = {p.split(":")[0] for p in report.problems}
    assert {"posting without order", "entry account"} <= kinds, report.problems
    assert any("mallory" in p and "does not exist" in p for p in report.problems if p.startswith("entry account"))
    assert any(f"{paid}:settle" in p for p in report.problems if p.startswith("posting without order"))
