"""Rule sets and lists in Postgres (migration 0014) and the per-process cache of what is in force
(RulesInForce), against the real test database: versions and rollback, a rule set with any
problem refused whole while the one in force stays, hot reload in two "workers", lists, and what
the app role may not do."""
from __future__ import annotations

import asyncio
import hashlib

import asyncpg
import pytest
import structlog

from paycell.errors import RuleSetInvalid, RuleSyntaxError, Unprocessable
from paycell.rules import changes
from paycell.rules.check import compile_rules, default_rules_text
from paycell.rules.evaluate import PaymentFacts, evaluate
from paycell.rules.in_force import RulesInForce
from paycell.store import risk_rules as store
from tests.rules.risk_support import (admin_conn, harmless_rules, make_list, push,  # noqa: F401 (fixtures)
                                      restore_in_force)

pytestmark = pytest.mark.usefixtures("restore_in_force")


class NoVelocity:
    def count(self, subject, kind, window_s):
        return 0

    def sum_minor(self, subject, kind, currency, window_s):
        return 0


def facts(**kw) -> PaymentFacts:
    base = dict(trigger="payin", direction="payin", amount_minor=10_00, currency="USD", payment_option="card",
                user_id="user-1", instrument="tok_card_ok", ip="203.0.113.9", country="FR")
    return PaymentFacts(**{**base, **kw})


async def in_force_version(pool) -> int | None:
    async with pool.acquire() as conn:
        return await store.in_force_version(conn)


# -- versions and rollback ----------------------------------------------------------------------

async def test_each_push_is_a_version_and_rolling_back_activates_an_older_one(pool):
    first = await push(pool, harmless_rules())
    second = await push(pool, harmless_rules())
    assert first.created and first.activated and second.created and second.activated
    assert second.version > first.version
    assert await in_force_version(pool) == second.version
    async with pool.acquire() as conn, conn.transaction():
        assert await changes.activate(conn, first.version, by="ops-bob") is True
    assert await in_force_version(pool) == first.version
    async with pool.acquire() as conn:
        history = await store.activations(conn, first.version, limit=10)
        assert [a["activated_by"] for a in history[:2]] == ["ops-bob", "tests"]
        assert (await store.rule_set(conn, second.version))["in_force"] is False
        # Activating the version in force again writes nothing.
        counter = await store.config_version(conn)
        async with conn.transaction():
            assert await changes.activate(conn, first.version, by="ops-bob") is False
        assert await store.config_version(conn) == counter


async def test_the_same_text_is_stored_once(pool):
    source = harmless_rules()
    first = await push(pool, source, activate=False)
    again = await push(pool, source, activate=False)
    assert first.created and not again.created and again.version == first.version
    async with pool.acquire() as conn:
        row = await store.rule_set(conn, first.version)
    assert bytes(row["sha256"]) == hashlib.sha256(source.encode()).digest()


async def test_push_without_activation_leaves_the_one_in_force(pool):
    in_force = (await push(pool, harmless_rules())).version
    stored = await push(pool, harmless_rules(), activate=False)
    assert not stored.activated and await in_force_version(pool) == in_force


async def test_activating_an_unknown_version_is_not_found(pool):
    from paycell.errors import NotFound
    async with pool.acquire() as conn, conn.transaction():
        with pytest.raises(NotFound):
            await changes.activate(conn, 9_000_000_000, by="tests")


@pytest.mark.parametrize("source, where", [
    ("block when amount >>> 5.00 USD\n", (1, 20)),                                   # does not parse
    ("block when amount > 5.00 USD\nreview when usr = \"x\"\n", (2, 13)),            # unknown field
    ("block when amount > 5.00 USD\nblock when ip in list:no_such_list\n", (2, 12)),  # unknown list
    ("block when amount > 5.00 USD\nblock when ip in list:blocked_users\n", (2, 12)),  # a list of users
])
async def test_a_broken_rule_set_is_refused_whole_and_the_one_in_force_stays(pool, source, where):
    in_force = (await push(pool, harmless_rules())).version
    async with pool.acquire() as conn:
        counter = await store.config_version(conn)
        stored = await conn.fetchval("SELECT count(*) FROM risk_rule_set")
    with pytest.raises(RuleSetInvalid) as refused:
        await push(pool, source)
    assert (refused.value.problems[0].line, refused.value.problems[0].column) == where, refused.value.problems
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM risk_rule_set") == stored
        assert await store.config_version(conn) == counter
    assert await in_force_version(pool) == in_force


async def test_every_problem_is_reported_with_its_place(pool):
    source = 'review when usr = "x"\nblock when amount > 5.00 USD and amount > 5.00 EUR\nblock when model.score > 3\n'
    with pytest.raises(RuleSetInvalid) as refused:
        await push(pool, source)
    assert [(p.line, p.column) for p in refused.value.problems] == [(1, 13), (3, 26)]
    assert not isinstance(refused.value, RuleSyntaxError)


# -- the cache in each process --------------------------------------------------------------------

async def test_two_workers_follow_a_push_and_a_rollback_without_restart(pool):
    harmless = await push(pool, harmless_rules())
    workers = [RulesInForce(0), RulesInForce(0)]
    async with pool.acquire() as conn:
        assert [(await w.get(conn)).version for w in workers] == [harmless.version] * 2
    blocking = await push(pool, harmless_rules(extra='block "test: big" when amount > 100.00 USD\n'))
    async with pool.acquire() as conn:
        after = [await w.get(conn) for w in workers]
        assert [a.version for a in after] == [blocking.version] * 2
        decision = evaluate(after[0].rule_set, facts(amount_minor=500_00), NoVelocity(), after[0].lists)
        assert decision.action == "block" and decision.reasons == ("test: big",)
        async with conn.transaction():
            await changes.activate(conn, harmless.version, by="tests")
        rolled = [await w.get(conn) for w in workers]
    assert [r.version for r in rolled] == [harmless.version] * 2
    decision = evaluate(rolled[1].rule_set, facts(amount_minor=500_00), NoVelocity(), rolled[1].lists)
    assert decision.action == "allow"


async def test_the_cache_holds_until_the_interval_passes_and_does_no_io_meanwhile(pool, migrated):
    cache = RulesInForce(0.5)
    async with pool.acquire() as conn:
        first = await cache.get(conn)
    pushed = await push(pool, harmless_rules())
    closed = await asyncpg.connect(migrated.app_database_url)
    await closed.close()
    # Within the interval the answer comes from memory: a closed connection is never touched.
    held = await cache.get(closed)
    assert held is first and held.version != pushed.version
    await asyncio.sleep(0.5)
    async with pool.acquire() as conn:
        fresh = await cache.get(conn)
    assert fresh.version == pushed.version and cache.reloads == 2


async def test_an_unchanged_counter_reads_one_row_and_loads_nothing(pool):
    cache = RulesInForce(0)
    async with pool.acquire() as conn:
        first = await cache.get(conn)
        again = await cache.get(conn)
    assert again is first and cache.reloads == 1


async def test_with_nothing_activated_the_default_file_is_version_0(admin_conn):
    txn = admin_conn.transaction()
    await txn.start()
    try:
        await admin_conn.execute("DELETE FROM risk_rule_set_activation")  # rolled back below
        in_force = await RulesInForce(0).get(admin_conn)
    finally:
        await txn.rollback()
    assert in_force.version == 0 and in_force.rejected_version is None
    assert in_force.rule_set == compile_rules(default_rules_text())
    assert {"blocked_users", "blocked_instruments", "blocked_ips", "blocked_countries"} <= set(in_force.lists)


async def test_a_stored_rule_set_that_no_longer_compiles_keeps_the_last_good_one(pool, admin_conn):
    good = await push(pool, harmless_rules())
    cache = RulesInForce(0)
    async with pool.acquire() as conn:
        assert (await cache.get(conn)).version == good.version
    # What the API never stores (it compiles first): written behind its back, as an upgrade that
    # renamed a field would leave it.
    broken_source = harmless_rules() + "block when no_such_field = \"x\"\n"
    broken = await admin_conn.fetchval(
        "INSERT INTO risk_rule_set (source, sha256, created_by) VALUES ($1, $2, 'tests') RETURNING version",
        broken_source, hashlib.sha256(broken_source.encode()).digest())
    await admin_conn.execute("INSERT INTO risk_rule_set_activation (version, activated_by) VALUES ($1, 'tests')",
                             broken)
    name = await make_list(pool, "ip")
    async with pool.acquire() as conn:
        async with conn.transaction():
            await changes.add_values(conn, name, ["198.51.100.7"], note="", by="tests")
        with structlog.testing.capture_logs() as logged:
            kept = await cache.get(conn)
        assert kept.version == good.version and kept.rejected_version == broken
        [error] = [e for e in logged if e["event"] == "risk.rules.rejected_on_load"]
        assert error["log_level"] == "error" and error["version"] == broken and error["keeping"] == good.version
        assert "unknown field no_such_field" in error["problems"][0]
        assert kept.lists[name] == frozenset({"198.51.100.7"})  # the lists still follow
        # A new process starts on the default file rather than on nothing.
        fresh = await RulesInForce(0).get(conn)
        assert fresh.version == 0 and fresh.rejected_version == broken
        # Activating a stored version that does not compile is refused.
        with pytest.raises(RuleSetInvalid):
            async with conn.transaction():
                await changes.activate(conn, broken, by="tests")
        async with conn.transaction():
            await changes.activate(conn, good.version, by="tests")
        healed = await cache.get(conn)
    assert healed.version == good.version and healed.rejected_version is None


def test_the_reload_interval_is_a_setting_that_may_be_0_but_not_negative():
    from paycell.config import SettingsError, load
    assert load({}).risk_reload_s == 1.0
    assert load({"PAYCELL_RISK_RELOAD_S": "0"}).risk_reload_s == 0
    with pytest.raises(SettingsError, match="PAYCELL_RISK_RELOAD_S"):
        load({"PAYCELL_RISK_RELOAD_S": "-1"})
    with pytest.raises(ValueError):
        RulesInForce(-0.5)


async def test_concurrent_gets_share_one_refresh(pool):
    cache = RulesInForce(10)
    async with pool.acquire() as a, pool.acquire() as b, pool.acquire() as c:
        results = await asyncio.gather(cache.get(a), cache.get(b), cache.get(c))
    assert results[0] is results[1] is results[2] and cache.reloads == 1


# -- lists --------------------------------------------------------------------------------------

async def test_list_values_added_removed_and_added_again_reach_the_workers(pool):
    name = await make_list(pool, "ip")
    cache = RulesInForce(0)
    async with pool.acquire() as conn:
        assert (await cache.get(conn)).lists[name] == frozenset()
        async with conn.transaction():
            normalised, added = await changes.add_values(
                conn, name, ["2001:DB8:0::1", "::ffff:192.0.2.1", "192.0.2.1"], note="fraud ring", by="ops-a")
        assert normalised == ["2001:db8::1", "192.0.2.1"] and added == normalised
        assert (await cache.get(conn)).lists[name] == {"2001:db8::1", "192.0.2.1"}
        async with conn.transaction():
            removed = await changes.remove_value(conn, name, "2001:db8:0:0::1", by="ops-b")
        assert removed["removed_by"] == "ops-b" and removed["value"] == "2001:db8::1"
        assert (await cache.get(conn)).lists[name] == {"192.0.2.1"}
        async with conn.transaction():
            assert (await changes.add_values(conn, name, ["2001:db8::1"], note="", by="ops-a"))[1] == ["2001:db8::1"]
        assert (await cache.get(conn)).lists[name] == {"2001:db8::1", "192.0.2.1"}
        rows = await store.entries(conn, name, limit=10, before=None, include_removed=True)
    assert [(r["value"], r["removed_by"]) for r in rows] == [
        ("2001:db8::1", None), ("192.0.2.1", None), ("2001:db8::1", "ops-b")]


async def test_adding_a_live_value_again_changes_nothing(pool):
    name = await make_list(pool, "country")
    async with pool.acquire() as conn:
        async with conn.transaction():
            await changes.add_values(conn, name, ["fr"], note="", by="tests")
        counter = await store.config_version(conn)
        async with conn.transaction():
            assert await changes.add_values(conn, name, ["FR"], note="", by="tests") == (["FR"], [])
        assert await store.config_version(conn) == counter  # no change, no reload anywhere


@pytest.mark.parametrize("kind, bad, field", [
    ("ip", ["192.0.2.1", "999.1.1.1"], "values[1]"),
    ("ip", ["10.0.0.0/8"], "values[0]"),
    ("country", ["usa"], "values[0]"),
    ("country", ["QQ"], "values[0]"),
    ("user", ["has space"], "values[0]"),
    ("instrument", ["wallet:alice"], "values[0]"),
    ("user", [], "values"),
    ("country", ["FR"] * 501, "values"),
])
async def test_bad_list_values_are_refused_and_nothing_is_written(pool, kind, bad, field):
    name = await make_list(pool, kind)
    async with pool.acquire() as conn:
        with pytest.raises(Unprocessable) as refused:
            async with conn.transaction():
                await changes.add_values(conn, name, bad, note="", by="tests")
        assert refused.value.field == field
        assert await conn.fetchval("SELECT count(*) FROM risk_list_entry WHERE list_name = $1", name) == 0


async def test_the_block_lists_exist_from_the_migration(pool):
    async with pool.acquire() as conn:
        kinds = await store.list_kinds(conn)
    assert {k: kinds[k] for k in ("blocked_users", "blocked_instruments", "blocked_ips", "blocked_countries")} == {
        "blocked_users": "user", "blocked_instruments": "instrument", "blocked_ips": "ip",
        "blocked_countries": "country"}


async def test_a_rule_set_naming_a_new_list_compiles_once_the_list_exists(pool):
    name = await make_list(pool, "user")
    pushed = await push(pool, harmless_rules(extra=f'review "watch" when user in list:{name}\n'))
    cache = RulesInForce(0)
    async with pool.acquire() as conn:
        async with conn.transaction():
            await changes.add_values(conn, name, ["user-1"], note="", by="tests")
        in_force = await cache.get(conn)
    assert in_force.version == pushed.version
    decision = evaluate(in_force.rule_set, facts(), NoVelocity(), in_force.lists)
    assert decision.action == "review" and "watch" in decision.reasons


# -- what the app role may not do ------------------------------------------------------------------

async def _refused(pool, sql: str, *args, error=asyncpg.InsufficientPrivilegeError):
    async with pool.acquire() as conn:
        txn = conn.transaction()
        await txn.start()
        try:
            with pytest.raises(error):
                await conn.execute(sql, *args)
        finally:
            await txn.rollback()


@pytest.mark.parametrize("sql", [
    "UPDATE risk_rule_set SET source = 'allow when amount > 1 USD' WHERE version = $1",
    "UPDATE risk_rule_set SET note = 'rewritten' WHERE version = $1",
    "DELETE FROM risk_rule_set WHERE version = $1",
    "UPDATE risk_rule_set_activation SET version = $1",
    "DELETE FROM risk_rule_set_activation WHERE version = $1",
    "UPDATE risk_config_version SET config_version = $1",
    "DELETE FROM risk_list_entry WHERE entry_id = $1",
    "UPDATE risk_list_entry SET value = 'x' WHERE entry_id = $1",
    "DELETE FROM risk_list WHERE name = 'blocked_ips' OR $1 = 0",
    "UPDATE risk_list SET kind = 'user' WHERE name = 'blocked_ips' OR $1 = 0",
])
async def test_the_app_role_cannot_rewrite_or_delete_the_history(pool, sql):
    version = (await push(pool, harmless_rules())).version
    await _refused(pool, sql, version)


@pytest.mark.parametrize("sql", ["TRUNCATE risk_rule_set CASCADE", "TRUNCATE risk_list_entry"])
async def test_the_app_role_cannot_truncate(pool, sql):
    await _refused(pool, sql)


async def test_a_removed_entry_stays_removed(pool):
    name = await make_list(pool, "user")
    async with pool.acquire() as conn:
        async with conn.transaction():
            await changes.add_values(conn, name, ["someone"], note="", by="tests")
            entry = await changes.remove_value(conn, name, "someone", by="tests")
    for sql in ("UPDATE risk_list_entry SET removed_at = NULL, removed_by = NULL WHERE entry_id = $1",
                "UPDATE risk_list_entry SET removed_at = now() - interval '1 day' WHERE entry_id = $1"):
        await _refused(pool, sql, entry["entry_id"], error=asyncpg.IntegrityConstraintViolationError)


async def test_the_stored_digest_must_match_the_source(pool):
    await _refused(pool, "INSERT INTO risk_rule_set (source, sha256, created_by) VALUES ('x', $1, 'tests')",
                   hashlib.sha256(b"y").digest(), error=asyncpg.CheckViolationError)
