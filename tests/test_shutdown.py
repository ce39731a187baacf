"""Clean shutdown: SIGTERM to a process's whole group (what honcho, systemd and container runtimes
send) stops the worker, the web and the simulator within 10 s, and no payment is lost: a worker
stopped mid-load hands back what it had not done, and the next worker finishes every payment."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import msgspec
import redis

from paycell.http.app import create_app
from tests.conftest import _free_port
from tests.helpers import assert_ledger_clean, attach, auth_header, new_user, payment_body, wait_until, wallet

PAYCELL = os.path.join(os.path.dirname(sys.executable), "paycell")
STOP_S_MAX = 10
PAYMENTS = 40


def _own_redis(settings) -> str:
    """A Redis database no other worker of the suite listens on."""
    base, _, db = settings.redis_url.rpartition("/")
    url = f"{base}/{int(db) + 7 if db.isdigit() else 8}"
    redis.Redis.from_url(url).flushdb()
    return url


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        # A session (and process group) of its own, as under honcho or systemd.
        return subprocess.Popen([PAYCELL, *argv], env={**os.environ, **env}, stdout=out, stderr=out,
                                start_new_session=True)


def _stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> float:
    """Send `sig` to the process's whole group; seconds until it exited (killed after STOP_S_MAX + 5)."""
    started = time.monotonic()
    os.killpg(proc.pid, sig)
    try:
        proc.wait(STOP_S_MAX + 5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    return time.monotonic() - started


def _group_left(pgid: int) -> list[str]:
    out = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True).stdout.split()
    return out


def _wait_for_log(log: Path, needle: bytes, count: int, proc: subprocess.Popen, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log.read_bytes().count(needle) >= count:
            return
        assert proc.poll() is None, log.read_text()[-3000:]
        time.sleep(0.1)
    raise AssertionError(f"no {count} x {needle!r} in {log}:\n{log.read_text()[-3000:]}")


async def _statuses(pool, user: str) -> dict[str, int]:
    rows = await pool.fetch("SELECT status, count(*) AS n FROM payment_request WHERE user_id = $1 GROUP BY status",
                            user)
    return {r["status"]: r["n"] for r in rows}


async def test_a_worker_stops_within_10_s_of_sigterm_to_its_group_and_no_payment_is_lost(
        aiohttp_client, migrated, psp_sim, pool, tmp_path):
    redis_url = _own_redis(migrated)
    settings = msgspec.structs.replace(migrated, redis_url=redis_url)
    api = await aiohttp_client(create_app(settings))
    user = new_user("sigterm")
    await attach(api, settings, user, "tok_card_ok")
    env, log = {"PAYCELL_REDIS_URL": redis_url, "PAYCELL_LOG_FORMAT": "json"}, tmp_path / "worker.log"
    worker = _start(["worker", "--processes", "2", "--threads", "4"], env, log)
    try:
        _wait_for_log(log, b"worker.booted", 2, worker)
        for _ in range(PAYMENTS):
            body = payment_body(user, "tok_card_ok", f"wallet:{user}", "1.00", "card")
            resp = await api.post("/payments/payment/v1", headers=auth_header(settings, user), json=body)
            assert resp.status == 202, await resp.text()
        assert await wait_until(lambda: _some_done(pool, user), timeout_s=30)
        stopped_s = _stop_group(worker)
        assert worker.returncode is not None and stopped_s < STOP_S_MAX, (stopped_s, log.read_text()[-3000:])
        assert _group_left(worker.pid) == []
        text = log.read_text()
        assert "Killing worker process" not in text and "worker.stopping" in text, text[-3000:]
        _assert_one_json_stream(text)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    # The next worker finishes whatever the stopped one handed back: nothing was lost.
    again = _start(["worker", "--processes", "1", "--threads", "4"], env, tmp_path / "worker2.log")
    try:
        assert await wait_until(lambda: _all_done(pool, user), timeout_s=60), await _statuses(pool, user)
    finally:
        assert _stop_group(again) < STOP_S_MAX
    assert await _statuses(pool, user) == {"succeeded": PAYMENTS}
    assert await wallet(api, settings, user) == {"USD": (f"{PAYMENTS}.00", "0.00")}
    redis.Redis.from_url(redis_url).flushdb()
    await assert_ledger_clean(pool)


def _assert_one_json_stream(text: str) -> None:
    """Every line is one JSON object: paycell's own events and Dramatiq's records alike, with the
    step's context bound on the step's lines."""
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all(isinstance(line, dict) and "timestamp" in line and "level" in line for line in lines)
    assert any(line.get("logger", "").startswith("dramatiq") for line in lines), lines[:20]
    assert any("Worker process is ready" in line.get("event", "") for line in lines)
    assert any(line.get("step") == "screen" and line.get("order_id") for line in lines)


async def _some_done(pool, user: str) -> bool:
    return (await _statuses(pool, user)).get("succeeded", 0) > 0


async def _all_done(pool, user: str) -> bool:
    return (await _statuses(pool, user)).get("succeeded", 0) == PAYMENTS


async def test_the_web_answers_waiting_clients_and_stops_within_10_s(migrated, pool, tmp_path):
    redis_url = _own_redis(migrated)  # no worker: the payment stays `processing`
    port = _free_port()
    settings = msgspec.structs.replace(migrated, redis_url=redis_url)
    web = _start(["web"], {"PAYCELL_REDIS_URL": redis_url, "PAYCELL_HTTP_PORT": str(port)}, tmp_path / "web.log")
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            assert await wait_until(lambda: _answers(http, base), timeout_s=30), (tmp_path / 'web.log').read_text()
            user = new_user("sigterm-web")
            resp = await http.post(f"{base}/payments/instrument/v1", headers=auth_header(settings, user),
                                   json={"token": "tok_card_ok", "payment_option": "card"})
            assert resp.status in (200, 201), await resp.text()
            body = payment_body(user, "tok_card_ok", f"wallet:{user}", "1.00", "card")
            waiting = asyncio.create_task(http.post(
                f"{base}/payments/payment/v1", json=body,
                headers=auth_header(settings, user) | {"Prefer": f"wait={migrated.prefer_wait_s_max}"}))
            assert await wait_until(lambda: _accepted(pool, user), timeout_s=10)
            started = time.monotonic()
            os.killpg(web.pid, signal.SIGTERM)
            answer = await waiting
            # The waiting client got its payment as it stands, at once, not after its whole wait.
            assert answer.status == 202 and (await answer.json())["status"] == "processing"
            assert time.monotonic() - started < migrated.prefer_wait_s_max / 2
        web.wait(STOP_S_MAX)
        assert time.monotonic() - started < STOP_S_MAX
        assert _group_left(web.pid) == []
    finally:
        if web.poll() is None:
            os.killpg(web.pid, signal.SIGKILL)
    redis.Redis.from_url(redis_url).flushdb()
    await assert_ledger_clean(pool)


async def _answers(http: aiohttp.ClientSession, base: str) -> bool:
    try:
        async with http.get(f"{base}/health") as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


async def _accepted(pool, user: str) -> bool:
    return bool(await pool.fetchval("SELECT count(*) FROM payment_request WHERE user_id = $1", user))


async def test_the_simulator_stops_within_10_s(tmp_path):
    port = _free_port()
    sim = _start(["psp-sim", "--port", str(port)], {}, tmp_path / "sim.log")
    try:
        async with aiohttp.ClientSession() as http:
            assert await wait_until(lambda: _answers_any(http, f"http://127.0.0.1:{port}/v1/outage"), timeout_s=30)
        assert _stop_group(sim) < STOP_S_MAX
        assert sim.returncode is not None and _group_left(sim.pid) == []
    finally:
        if sim.poll() is None:
            os.killpg(sim.pid, signal.SIGKILL)


async def _answers_any(http: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with http.get(url) as resp:
            return resp.status < 500
    except aiohttp.ClientError:
        return False
