"""The operator commands, run as processes against the test database and Redis."""
from __future__ import annotations

import os
import subprocess
import sys

import jwt
import pytest

from tests.helpers import assert_ledger_clean, fund_wallet, new_user

PAYCELL = os.path.join(os.path.dirname(sys.executable), "paycell")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PAYCELL, *args], capture_output=True, text=True, timeout=60)


def test_token_prints_a_jwt_for_the_user(settings):
    out = run("token", "alice-1")
    assert out.returncode == 0, out.stderr
    claims = jwt.decode(out.stdout.strip(), settings.jwt_secret, algorithms=["HS256"],
                        audience=settings.jwt_audience, issuer=settings.jwt_issuer)
    assert claims["sub"] == "alice-1" and claims["exp"] > claims["iat"]


def test_a_malformed_setting_names_its_variable():
    out = subprocess.run([PAYCELL, "ledger", "check"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PAYCELL_HTTP_PORT": "eighty"})
    assert out.returncode != 0 and "PAYCELL_HTTP_PORT" in out.stderr


async def test_ledger_check_reports_ok_on_a_clean_ledger(pool, book):
    await fund_wallet(pool, book, new_user(), 1_00)
    out = run("ledger", "check")
    assert out.returncode == 0 and ": OK" in out.stdout, out.stdout + out.stderr
    await assert_ledger_clean(pool)


@pytest.mark.usefixtures("migrated")
def test_queues_shows_each_queue_with_its_counts(redis_client):
    out = run("queues")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["queue", "ready", "delayed", "dead"]
    assert {line.split()[0] for line in lines[1:]} >= {"payments", "maintenance"}


@pytest.mark.usefixtures("migrated")
def test_dlq_list_and_replay_answer_for_unknown_ids():
    listed = run("dlq", "list")
    assert listed.returncode == 0, listed.stderr
    missing = run("dlq", "replay", "999999999")
    assert missing.returncode == 1 and "not found" in missing.stdout
    assert run("dlq", "replay").returncode == 2  # neither an id nor --all


@pytest.mark.usefixtures("migrated")
def test_sweep_runs_once_and_says_what_it_did():
    out = run("sweep")
    assert out.returncode == 0 and out.stdout.startswith("re-driven:"), out.stdout + out.stderr
