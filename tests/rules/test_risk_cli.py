"""`paycell risk rules|lists`, run as processes against the test database."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from paycell.store import risk_rules as store
from tests.rules.risk_support import harmless_rules, make_list, restore_in_force  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("restore_in_force")

PAYCELL = os.path.join(os.path.dirname(sys.executable), "paycell")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PAYCELL, "risk", *args], capture_output=True, text=True, timeout=60)


async def in_force_version(pool):
    async with pool.acquire() as conn:
        return await store.in_force_version(conn)


async def test_push_show_and_roll_back(pool, tmp_path):
    first, second = tmp_path / "first.rules", tmp_path / "second.rules"
    first.write_text(harmless_rules())
    second.write_text(harmless_rules())
    out = run("rules", "push", str(first), "--note", "first", "--as", "ops-carol")
    assert out.returncode == 0, out.stderr
    v1 = int(out.stdout.split()[1].rstrip(":"))
    assert out.stdout.strip() == f"version {v1}: stored, put in force"
    out = run("rules", "push", str(second))
    v2 = int(out.stdout.split()[1].rstrip(":"))
    assert await in_force_version(pool) == v2
    async with pool.acquire() as conn:
        assert (await store.rule_set(conn, v2))["created_by"] == f"cli:{_user()}"

    shown = run("rules", "show")
    lines = {line.split()[1] if line.startswith("*") else line.split()[0]: line for line in shown.stdout.splitlines()}
    assert lines[str(v2)].startswith("*") and not lines[str(v1)].startswith("*") and "ops-carol" in lines[str(v1)]
    one = run("rules", "show", str(v1))
    assert one.returncode == 0 and "# note: first" in one.stdout and harmless_rules("x")[:200] in one.stdout

    out = run("rules", "activate", str(v1), "--as", "ops-carol")
    assert out.returncode == 0 and out.stdout.strip() == f"version {v1}: put in force", out.stderr
    assert await in_force_version(pool) == v1
    assert run("rules", "activate", "999999999999").returncode == 1


def _user() -> str:
    import getpass
    return getpass.getuser()


async def test_a_broken_file_is_refused_with_its_places_and_the_one_in_force_stays(pool, tmp_path):
    good = tmp_path / "good.rules"
    good.write_text(harmless_rules())
    assert run("rules", "push", str(good)).returncode == 0
    before = await in_force_version(pool)
    broken = tmp_path / "broken.rules"
    broken.write_text('block when amount > 5.00 USD\nreview when usr = "x"\nblock when ip in list:nope\n')
    for command in (("rules", "check", str(broken)), ("rules", "push", str(broken))):
        out = run(*command)
        assert out.returncode == 1, out
        assert f"{broken}:2:13: unknown field usr" in out.stderr and f"{broken}:3:12: unknown list" in out.stderr
    assert await in_force_version(pool) == before
    offline = run("rules", "check", "--offline", str(broken))
    assert offline.returncode == 1 and ":3:12:" not in offline.stderr  # lists are not checked offline
    syntax = tmp_path / "syntax.rules"
    syntax.write_text("block when amount >>> 5.00 USD\n")
    out = run("rules", "check", str(syntax))
    assert out.returncode == 1 and "does not parse" in out.stderr and f"{syntax}:1:20:" in out.stderr
    assert run("rules", "check", str(good)).stdout.strip().endswith("OK, 12 rules")


async def test_lists_add_show_remove(pool):
    name = await make_list(pool, "country")
    out = run("lists", "add", name, "fr", "DE", "--note", "sanctions", "--as", "ops-dan")
    assert out.returncode == 0 and out.stdout.strip() == f"{name}: 2 added, 0 already there: FR DE", out.stderr
    assert "1 added, 1 already there" in run("lists", "add", name, "FR", "NZ").stdout
    bad = run("lists", "add", name, "usa")
    assert bad.returncode == 1 and "values[0]" in bad.stderr
    assert f"{name:<32} country            3 live" in run("lists", "show").stdout
    assert run("lists", "remove", name, "de", "--as", "ops-dan").returncode == 0
    shown = run("lists", "show", name)
    assert shown.stdout.splitlines()[-1] == "2 live entries" and "DE" not in shown.stdout
    history = run("lists", "show", name, "--all")
    assert "DE" in history.stdout and "removed by ops-dan" in history.stdout
    assert run("lists", "show", "no_such_list").returncode == 1
    created = run("lists", "create", name + "_ip", "ip")
    assert created.returncode == 0 and "created" in created.stdout
