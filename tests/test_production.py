"""Production mode and the secret, as an operator meets them: the `paycell` processes refuse to
start, each with a message that names the PAYCELL_* variable and says what to do."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from paycell.config import SettingsError
from paycell.production import preflight, refuse_superuser
from paycell.psp import sims

PAYCELL = os.path.join(os.path.dirname(sys.executable), "paycell")
# The test environment's settings production refuses: the simulators, and every connector pointed
# at its simulator over plain http.
DEV_ONLY = frozenset({"PAYCELL_PSP_SIM_URL", "PAYCELL_PSP_SIM_WEBHOOK_SECRET", "PAYCELL_PSP_ROUTES",
                      *sims.connector_env("http://127.0.0.1:1")})
ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def paycell(*args: str, env: dict[str, str], timeout_s: float = 60) -> subprocess.CompletedProcess:
    # Free ports: a process that wrongly starts must not take the default ones from anybody.
    env = env | {"PAYCELL_HTTP_PORT": _free_port()}
    return subprocess.run([PAYCELL, *args], capture_output=True, text=True, timeout=timeout_s, env=env, cwd=ROOT)


@pytest.fixture
def production_env(settings) -> dict[str, str]:
    """The test environment turned into one production accepts, but for the database role: the
    app URL is the test database's owner, a superuser."""
    env = {k: v for k, v in os.environ.items() if k not in DEV_ONLY}
    return env | {
        "PAYCELL_ENV": "production",
        "PAYCELL_PSP_DEFAULT": "acme",
        "PAYCELL_REDIS_URL": "redis://:unused-password@127.0.0.1:1/0",  # never reached: refused before
        "PAYCELL_DATABASE_URL": settings.admin_database_url,
        "PAYCELL_TLS_BEHIND_PROXY": "true",  # the web's plain-HTTP refusal has a test of its own (tests/tls)
    }


def test_the_web_refuses_to_start_without_a_jwt_secret():
    env = {k: v for k, v in os.environ.items() if k != "PAYCELL_JWT_SECRET"}
    out = paycell("web", env=env)
    assert out.returncode != 0
    assert "PAYCELL_JWT_SECRET" in out.stderr and "secrets.token_urlsafe(32)" in out.stderr, out.stderr


@pytest.mark.parametrize("command", ["web", "worker", "scheduler", "token alice", "migrate"])
def test_every_command_refuses_the_old_default_secret(command):
    env = os.environ | {"PAYCELL_JWT_SECRET": "paycell-dev-secret-change-me-0123456789"}
    out = paycell(*command.split(), env=env)
    assert out.returncode != 0 and "PAYCELL_JWT_SECRET" in out.stderr, out.stderr


def test_token_without_a_secret_says_where_the_dev_secret_is():
    env = {k: v for k, v in os.environ.items() if k != "PAYCELL_JWT_SECRET"}
    out = paycell("token", "alice", env=env)
    assert out.returncode != 0 and "PAYCELL_JWT_SECRET" in out.stderr and ".state/jwt_secret" in out.stderr


@pytest.mark.usefixtures("migrated")
@pytest.mark.parametrize("command", ["web", "worker", "scheduler"])
def test_production_processes_refuse_a_superuser_app_role(production_env, command):
    out = paycell(command, env=production_env)
    assert out.returncode != 0
    assert "superuser" in out.stderr and "PAYCELL_DATABASE_URL" in out.stderr, out.stderr


@pytest.mark.parametrize("command", ["psp-sim", "dev --exit-after-demo"])
def test_production_refuses_the_simulator(production_env, command):
    out = paycell(*command.split(), env=production_env)
    assert out.returncode != 0 and "PAYCELL_ENV=production" in out.stderr, out.stderr


def test_the_simulator_module_refuses_production_however_started(production_env):
    out = subprocess.run([sys.executable, "-m", "paycell.psp.simulator", "--port", "1"], capture_output=True,
                         text=True, timeout=60, env=production_env)
    assert out.returncode != 0 and "PAYCELL_ENV=production" in out.stderr, out.stderr


def test_production_refuses_the_simulator_connector_at_start(production_env):
    env = {k: v for k, v in production_env.items() if k != "PAYCELL_PSP_DEFAULT"}
    out = paycell("worker", env=env)
    assert out.returncode != 0 and "PAYCELL_PSP_DEFAULT" in out.stderr, out.stderr


async def test_the_least_privileged_app_role_passes_the_production_check(migrated):
    production = msgspec.structs.replace(migrated, env="production")
    await refuse_superuser(production)  # paycell_app, as `paycell migrate` made it
    await preflight(production)
    owner = msgspec.structs.replace(production, database_url=migrated.admin_database_url)
    with pytest.raises(SettingsError, match="superuser"):
        await preflight(owner)
    await preflight(msgspec.structs.replace(owner, env="development"))  # development does not check


def test_the_production_procfile_has_no_simulator_and_the_dev_one_has():
    def processes(name: str) -> dict[str, str]:
        lines = (ROOT / name).read_text().splitlines()
        return dict(line.split(":", 1) for line in lines if line and not line.startswith("#"))

    production, dev = processes("Procfile"), processes("Procfile.dev")
    assert set(production) == {"release", "web", "worker", "scheduler"}
    assert not any("psp-sim" in command or "simulator" in command for command in production.values())
    assert set(dev) == set(production) | {"psp-sim"}
