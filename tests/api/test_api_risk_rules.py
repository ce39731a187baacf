"""The operator API of rule sets and lists (paycell/http/risk_rules.py), over HTTP against the real
database: what an operator can do, what a user's token cannot (403 on every route), refusals that
name what is wrong and write nothing, and workers following a push without a restart."""
from __future__ import annotations

import uuid

import msgspec
import pytest

from paycell.rules.in_force import RulesInForce
from paycell.store import risk_rules as store
from tests.api.support import call, error_of
from tests.helpers import auth_header, new_user, operator_header
from tests.rules.risk_support import harmless_rules, new_list_name, restore_in_force  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("restore_in_force")

RULE_SETS = "/risk/rule-sets"
LISTS = "/risk/lists"


@pytest.fixture
def ops(settings):
    return operator_header(settings, "ops-alice")


async def post_rules(api, ops, source: str, **body):
    return await call(api, "POST", RULE_SETS, headers=ops, json={"source": source, **body})


async def in_force(api, ops) -> dict:
    reply = await call(api, "GET", RULE_SETS + "/in-force", headers=ops)
    assert reply.status == 200, reply.json
    return reply.json


# -- rule sets --------------------------------------------------------------------------------

async def test_push_stores_a_version_in_force_and_says_who(api, ops):
    source = harmless_rules()
    reply = await post_rules(api, ops, source, note="tighter card testing")
    assert reply.status == 201, reply.json
    body = reply.json
    assert body["object"] == "risk_rule_set" and body["created"] is True and body["activated"] is True
    assert body["in_force"] is True and body["created_by"] == "ops-alice" and body["note"] == "tighter card testing"
    assert reply.headers["Location"] == f"{RULE_SETS}/{body['version']}"
    one = await call(api, "GET", reply.headers["Location"], headers=ops)
    assert one.status == 200 and one.json["source"] == source and one.json["in_force"] is True
    assert one.json["activations"][0]["activated_by"] == "ops-alice"
    current = await in_force(api, ops)
    assert current["version"] == body["version"] and current["source"] == source and current["default"] is False
    assert current["activated_by"] == "ops-alice"


async def test_the_same_text_twice_names_the_first_version(api, ops):
    source = harmless_rules()
    first = await post_rules(api, ops, source, activate=False)
    again = await post_rules(api, ops, source, activate=False)
    assert (first.status, again.status) == (201, 200)
    assert again.json["version"] == first.json["version"] and again.json["created"] is False


async def test_push_without_activation_then_activate_then_roll_back(api, ops, settings):
    old = (await post_rules(api, ops, harmless_rules())).json["version"]
    new = await post_rules(api, ops, harmless_rules(), activate=False)
    assert new.status == 201 and new.json["activated"] is False and new.json["in_force"] is False
    assert (await in_force(api, ops))["version"] == old
    bob = operator_header(settings, "ops-bob")
    activated = await call(api, "POST", f"{RULE_SETS}/{new.json['version']}/activate", headers=bob)
    assert activated.status == 200 and activated.json["activated"] is True and activated.json["in_force"] is True
    assert (await in_force(api, ops))["activated_by"] == "ops-bob"
    rolled_back = await call(api, "POST", f"{RULE_SETS}/{old}/activate", headers=ops)
    assert rolled_back.status == 200 and rolled_back.json["activated"] is True
    assert (await in_force(api, ops))["version"] == old
    again = await call(api, "POST", f"{RULE_SETS}/{old}/activate", headers=ops)
    assert again.status == 200 and again.json["activated"] is False


async def test_activating_an_unknown_version_is_404(api, ops):
    reply = await call(api, "POST", f"{RULE_SETS}/999999999999/activate", headers=ops)
    assert error_of(reply) == (404, "not_found")
    assert error_of(await call(api, "GET", f"{RULE_SETS}/999999999999", headers=ops)) == (404, "not_found")


@pytest.mark.parametrize("source, code, problems", [
    ("block when amount >>> 5.00 USD\n", "rules_syntax", [(1, 20)]),
    ('block when amount > 5.00 USD\nreview when usr = "x"\n', "rules_invalid", [(2, 13)]),
    ("block when ip in list:no_such_list\nreview when model.score > 2\n", "rules_invalid", [(1, 12), (2, 27)]),
    ("block when ip in list:blocked_countries or currency in list:blocked_users\nreview when usr = \"x\"\n",
     "rules_invalid", [(1, 12), (1, 44), (2, 13)]),  # lists of another kind, with the other problems
])
async def test_a_broken_rule_set_is_422_with_every_problem_and_nothing_changes(api, ops, pool, source, code,
                                                                               problems):
    before = (await post_rules(api, ops, harmless_rules())).json["version"]
    async with pool.acquire() as conn:
        stored, counter = await conn.fetchval("SELECT count(*) FROM risk_rule_set"), await store.config_version(conn)
    reply = await post_rules(api, ops, source)
    assert reply.status == 422, reply.json
    error = reply.json["error"]
    assert error["code"] == code and error["message"]
    assert [(p["line"], p["column"]) for p in error["problems"]] == problems
    assert all(p["message"] for p in error["problems"])
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM risk_rule_set") == stored
        assert await store.config_version(conn) == counter
    assert (await in_force(api, ops))["version"] == before


@pytest.mark.parametrize("body, status, code, field", [
    ({"source": ""}, 422, "rules_empty", "source"),
    ({"source": "# x\n" * 20_000}, 422, "rules_too_large", "source"),
    ({"source": "# x\n", "note": "n" * 501}, 422, "note_too_long", "note"),
    ({"source": "# x\n", "activate": "yes"}, 400, "invalid_request", "activate"),
    ({"source": "# x\n", "extra": 1}, 400, "invalid_request", None),
    ({"note": "no source"}, 400, "invalid_request", "source"),
])
async def test_a_malformed_push_is_refused_naming_the_field(api, ops, body, status, code, field):
    reply = await call(api, "POST", RULE_SETS, headers=ops, json=body)
    assert error_of(reply) == (status, code), reply.json
    if field is not None:
        assert reply.json["error"]["field"] == field


async def test_a_rule_set_up_to_64_kib_is_accepted_beyond_the_api_body_cap(api, ops, settings):
    source = harmless_rules() + "# padding\n" * ((60_000 - len(harmless_rules())) // 10)
    assert len(source) > settings.http_body_bytes_max
    reply = await post_rules(api, ops, source, activate=False)
    assert reply.status == 201, reply.json
    assert reply.json["source_bytes"] == len(source.encode())


async def test_an_idempotency_key_replays_the_first_answer(api, ops, pool):
    key = str(uuid.uuid4())
    source = harmless_rules()
    headers = {**ops, "Idempotency-Key": key}
    first = await call(api, "POST", RULE_SETS, headers=headers, json={"source": source})
    assert first.status == 201
    # Meanwhile someone activates another version: the retry must not undo that.
    other = (await post_rules(api, ops, harmless_rules())).json["version"]
    retry = await call(api, "POST", RULE_SETS, headers=headers, json={"source": source})
    assert retry.status == 201 and retry.json == first.json and retry.headers["Idempotent-Replayed"] == "true"
    assert (await in_force(api, ops))["version"] == other
    conflict = await call(api, "POST", RULE_SETS, headers=headers, json={"source": harmless_rules()})
    assert error_of(conflict) == (422, "idempotency_key_reused")
    bad = await call(api, "POST", RULE_SETS, headers={**ops, "Idempotency-Key": "a b"}, json={"source": source})
    assert error_of(bad) == (400, "invalid_request")


async def test_two_requests_at_once_with_one_key_store_one_version(api, ops, pool):
    import asyncio
    headers = {**ops, "Idempotency-Key": str(uuid.uuid4())}
    source = harmless_rules()
    replies = await asyncio.gather(*[call(api, "POST", RULE_SETS, headers=headers, json={"source": source})
                                     for _ in range(4)])
    assert [r.status for r in replies] == [201] * 4
    assert len({r.json["version"] for r in replies}) == 1 and all(r.json == replies[0].json for r in replies)
    assert sum("Idempotent-Replayed" not in r.headers for r in replies) == 1
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM risk_rule_set_activation WHERE version = $1",
                                   replies[0].json["version"]) == 1


async def test_rule_sets_are_listed_newest_first_a_page_at_a_time(api, ops):
    versions = [(await post_rules(api, ops, harmless_rules(), activate=False)).json["version"] for _ in range(3)]
    page = await call(api, "GET", RULE_SETS + "?limit=2", headers=ops)
    assert page.status == 200 and page.json["has_more"] is True
    assert [r["version"] for r in page.json["data"]] == versions[::-1][:2]
    assert all("source" not in r for r in page.json["data"])
    rest = await call(api, "GET", f"{RULE_SETS}?limit=1&starting_after={page.json['next_cursor']}", headers=ops)
    assert [r["version"] for r in rest.json["data"]] == [versions[0]]
    forged = await call(api, "GET", f"{RULE_SETS}?starting_after=abc.def", headers=ops)
    assert error_of(forged) == (400, "invalid_request")


async def test_two_workers_follow_a_push_through_the_api_without_restart(api, ops, pool):
    workers = [RulesInForce(0), RulesInForce(0)]
    async with pool.acquire() as conn:
        before = {(await w.get(conn)).version for w in workers}
    pushed = (await post_rules(api, ops, harmless_rules())).json["version"]
    assert pushed not in before
    async with pool.acquire() as conn:
        assert [(await w.get(conn)).version for w in workers] == [pushed, pushed]
    name = new_list_name()
    assert (await call(api, "POST", LISTS, headers=ops, json={"name": name, "kind": "country"})).status == 201
    assert (await call(api, "POST", f"{LISTS}/{name}/entries", headers=ops, json={"values": ["nz"]})).status == 200
    async with pool.acquire() as conn:
        assert [(await w.get(conn)).lists[name] for w in workers] == [frozenset({"NZ"})] * 2


# -- lists ----------------------------------------------------------------------------------------

async def test_a_list_is_created_filled_emptied_and_filled_again(api, ops, settings):
    name = new_list_name()
    created = await call(api, "POST", LISTS, headers=ops, json={"name": name, "kind": "ip"})
    assert created.status == 201 and created.json["kind"] == "ip" and created.json["live_entries"] == 0
    same = await call(api, "POST", LISTS, headers=ops, json={"name": name, "kind": "ip"})
    assert same.status == 200
    clash = await call(api, "POST", LISTS, headers=ops, json={"name": name, "kind": "user"})
    assert error_of(clash) == (409, "list_exists")

    added = await call(api, "POST", f"{LISTS}/{name}/entries", headers=ops,
                       json={"values": ["2001:DB8::1", "192.0.2.1"], "note": "ring 7"})
    assert added.status == 200 and added.json["added"] == ["2001:db8::1", "192.0.2.1"]
    again = await call(api, "POST", f"{LISTS}/{name}/entries", headers=ops, json={"values": ["192.0.2.1"]})
    assert again.json["added"] == [] and again.json["unchanged"] == ["192.0.2.1"]

    bob = operator_header(settings, "ops-bob")
    removed = await call(api, "DELETE", f"{LISTS}/{name}/entries/2001:db8:0::1", headers=bob)
    assert removed.status == 200 and removed.json["status"] == "removed" and removed.json["removed_by"] == "ops-bob"
    twice = await call(api, "DELETE", f"{LISTS}/{name}/entries/2001:db8::1", headers=bob)
    assert twice.status == 200 and twice.json["entry_id"] == removed.json["entry_id"]
    never = await call(api, "DELETE", f"{LISTS}/{name}/entries/203.0.113.1", headers=bob)
    assert error_of(never) == (404, "not_found")

    readded = await call(api, "POST", f"{LISTS}/{name}/entries", headers=ops, json={"values": ["2001:db8::1"]})
    assert readded.json["added"] == ["2001:db8::1"]
    live = await call(api, "GET", f"{LISTS}/{name}", headers=ops)
    assert live.json["live_entries"] == 2
    assert [e["value"] for e in live.json["entries"]["data"]] == ["2001:db8::1", "192.0.2.1"]
    history = await call(api, "GET", f"{LISTS}/{name}?include_removed=true&limit=2", headers=ops)
    assert history.json["entries"]["has_more"] is True
    rest = await call(api, "GET", f"{LISTS}/{name}?include_removed=true&starting_after="
                                  f"{history.json['entries']['next_cursor']}", headers=ops)
    assert [(e["value"], e["status"]) for e in rest.json["entries"]["data"]] == [("2001:db8::1", "removed")]
    other = await call(api, "GET", f"{LISTS}/blocked_ips?starting_after={history.json['entries']['next_cursor']}",
                       headers=ops)
    assert error_of(other) == (400, "invalid_request")  # another list's cursor

    listed = await call(api, "GET", f"{LISTS}?limit=100", headers=ops)
    names = [entry["name"] for entry in listed.json["data"]]
    assert names == sorted(names) and {"blocked_ips", "blocked_countries"} <= set(names)


@pytest.mark.parametrize("kind, values, code, field", [
    ("ip", ["192.0.2.1", "192.0.2.300"], "list_value_invalid", "values[1]"),
    ("country", ["usa"], "list_value_invalid", "values[0]"),
    ("user", ["bad user"], "list_value_invalid", "values[0]"),
    ("instrument", ["x" * 201], "list_value_invalid", "values[0]"),
    ("country", ["DE"] * 501, "list_values_too_many", "values"),
    ("ip", [], "list_values_invalid", "values"),
])
async def test_bad_list_values_are_422_naming_the_value_and_nothing_is_written(api, ops, pool, kind, values, code,
                                                                                field):
    name = new_list_name()
    assert (await call(api, "POST", LISTS, headers=ops, json={"name": name, "kind": kind})).status == 201
    reply = await call(api, "POST", f"{LISTS}/{name}/entries", headers=ops, json={"values": values})
    assert error_of(reply) == (422, code) and reply.json["error"]["field"] == field
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM risk_list_entry WHERE list_name = $1", name) == 0


async def test_the_lists_hold_at_most_the_configured_live_entries_and_a_refused_add_writes_nothing(
        aiohttp_client, migrated, ops, pool):
    from paycell.http.app import create_app

    name = new_list_name()
    async with pool.acquire() as conn:
        live = await store.live_entries(conn)
    api = await aiohttp_client(create_app(msgspec.structs.replace(migrated, risk_list_entries_max=live + 1)))
    assert (await call(api, "POST", LISTS, headers=ops, json={"name": name, "kind": "ip"})).status == 201
    refused = await call(api, "POST", f"{LISTS}/{name}/entries", headers=ops,
                         json={"values": ["192.0.2.1", "192.0.2.2"]})
    assert error_of(refused) == (422, "risk_lists_full")
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM risk_list_entry WHERE list_name = $1", name) == 0
    assert (await call(api, "POST", f"{LISTS}/{name}/entries", headers=ops, json={"values": ["192.0.2.1"]})).status == 200
    again = await call(api, "POST", f"{LISTS}/{name}/entries", headers=ops, json={"values": ["192.0.2.1"]})
    assert again.status == 200 and again.json["unchanged"] == ["192.0.2.1"]  # a value already live adds nothing
    removed = await call(api, "DELETE", f"{LISTS}/{name}/entries/192.0.2.1", headers=ops)
    assert removed.status == 200


@pytest.mark.parametrize("body, code, field", [
    ({"name": "Bad-Name", "kind": "ip"}, "list_name_invalid", "name"),
    ({"name": "x" * 64, "kind": "ip"}, "list_name_invalid", "name"),
    ({"name": "fine", "kind": "email"}, "list_kind_invalid", "kind"),
])
async def test_a_bad_list_is_422(api, ops, body, code, field):
    reply = await call(api, "POST", LISTS, headers=ops, json=body)
    assert error_of(reply) == (422, code) and reply.json["error"]["field"] == field


async def test_an_unknown_list_is_404(api, ops):
    for method, path, body in [("GET", f"{LISTS}/no_such_list", None),
                               ("POST", f"{LISTS}/no_such_list/entries", {"values": ["x"]}),
                               ("DELETE", f"{LISTS}/no_such_list/entries/x", None),
                               ("GET", f"{LISTS}/Not-A-Name", None)]:
        assert error_of(await call(api, method, path, headers=ops, json=body)) == (404, "not_found"), path


async def test_a_rule_set_may_name_a_list_once_it_exists(api, ops):
    name = new_list_name()
    source = harmless_rules(extra=f'block "watched" when user in list:{name}\n')
    refused = await post_rules(api, ops, source)
    assert error_of(refused) == (422, "rules_invalid") and name in refused.json["error"]["problems"][0]["message"]
    assert (await call(api, "POST", LISTS, headers=ops, json={"name": name, "kind": "user"})).status == 201
    assert (await post_rules(api, ops, source)).status == 201


# -- only operators -------------------------------------------------------------------------------

ROUTES = [
    ("POST", RULE_SETS, {"source": "# x\n"}),
    ("GET", RULE_SETS, None),
    ("GET", RULE_SETS + "/in-force", None),
    ("GET", RULE_SETS + "/1", None),
    ("POST", RULE_SETS + "/1/activate", None),
    ("GET", LISTS, None),
    ("POST", LISTS, {"name": "user_made", "kind": "ip"}),
    ("GET", LISTS + "/blocked_ips", None),
    ("POST", LISTS + "/blocked_ips/entries", {"values": ["192.0.2.1"]}),
    ("DELETE", LISTS + "/blocked_ips/entries/192.0.2.1", None),
]


async def test_every_route_is_in_the_forbidden_test(api):
    registered = {(r.method, r.resource.canonical) for r in api.app.router.routes()
                  if r.method != "HEAD" and r.resource is not None and r.resource.canonical.startswith("/risk/")}
    assert len(registered) == len(ROUTES)


@pytest.mark.parametrize("method, path, body", ROUTES)
async def test_a_user_token_gets_403_on_every_route_and_changes_nothing(api, settings, pool, method, path, body):
    async with pool.acquire() as conn:
        counter = await store.config_version(conn)
    reply = await call(api, method, path, headers=auth_header(settings, new_user()), json=body)
    assert error_of(reply) == (403, "forbidden")
    async with pool.acquire() as conn:
        assert await store.config_version(conn) == counter
    assert error_of(await call(api, method, path, json=body)) == (401, "unauthenticated")



async def test_the_operator_routes_match_their_openapi_description(migrated, pool, tmp_path):
    """schemathesis (as tests/api/test_api_openapi.py, whose token is a user's: 403 everywhere)
    with an operator's token, over the /risk/ operations only, so the answers an operator gets
    are checked against the description too. What it added to lists (the block lists too) is
    removed afterwards, and restore_in_force puts back the rule set in force."""
    import asyncio
    import os
    import sys
    from pathlib import Path

    from tests.api.conftest import parked
    from tests.api.support import served
    from tests.api.test_api_openapi import CONFIG, SEED

    settings = parked(migrated)
    schemathesis = str(Path(sys.executable).with_name("schemathesis"))
    async with served(settings) as port:
        proc = await asyncio.create_subprocess_exec(
            schemathesis, "--config-file", str(CONFIG), "run", f"http://127.0.0.1:{port}/openapi.json",
            "--checks", "all", "--include-path-regex", "^/risk/", "--max-examples", "30", "--seed", str(SEED),
            "--workers", "1", "--header", f"Authorization: {operator_header(settings, 'ops-fuzz')['Authorization']}",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
            env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false"})
        try:
            async with asyncio.timeout(300):
                output, _ = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await pool.execute("""UPDATE risk_list_entry SET removed_by = 'tests', removed_at = now()
                                   WHERE added_by = 'ops-fuzz' AND removed_at IS NULL""")
    assert proc.returncode == 0, output.decode(errors="replace")[-20_000:]


async def test_activating_version_0_puts_the_rule_file_back_in_force(api, ops, pool, settings):
    from paycell.rules.in_force import rules_file_text
    pushed = await post_rules(api, ops, harmless_rules())
    assert pushed.status == 201, pushed.json
    workers = RulesInForce(0, default_source=rules_file_text(settings))
    async with pool.acquire() as conn:
        assert (await workers.get(conn)).version == pushed.json["version"]
    back = await call(api, "POST", RULE_SETS + "/0/activate", headers=ops)
    assert back.status == 200, back.json
    assert (back.json["object"], back.json["version"], back.json["default"]) == ("risk_rule_set_in_force", 0, True)
    assert back.json["source"] == rules_file_text(settings) and back.json["activated_by"] == "ops-alice"
    assert (await in_force(api, ops))["version"] == 0
    async with pool.acquire() as conn:
        now = await workers.get(conn)
    assert now.version == 0 and len(now.rule_set.rules) == 4  # tests/risk/baseline.rules: the block lists
    again = await call(api, "POST", RULE_SETS + "/0/activate", headers=ops)
    assert again.status == 200 and again.json["version"] == 0
