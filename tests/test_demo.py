"""`paycell dev`, as a newcomer runs it: every process and the README's demo
(tests/risk/test_demo.py runs the demo against the suite's own processes)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import redis

from paycell.psp import sims
from tests.conftest import _free_port
from tests.helpers import assert_ledger_clean, no_periodic_job_overdue


RISK_LINES = ["succeeded", "succeeded", "failed (risk_blocked)", "processing", "succeeded"]


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        out = subprocess.run(["pgrep", "-P", str(todo.pop())], capture_output=True, text=True).stdout.split()
        found += [int(p) for p in out]
        todo += [int(p) for p in out]
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is gone, only not yet reaped
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def _risk_lines(out: str) -> list[str]:
    """The outcomes the demo's risk part printed: Mallory's first, fifth and sixth pay-ins, Carol's
    parked pay-in and the same after an operator approved it."""
    return [line.split(": ", 1)[1].split("  (")[0] for line in out.splitlines()
            if line.startswith("  pay-in ") and (" by mallory-" in line or " by carol-" in line)]


async def test_paycell_dev_runs_every_process_and_the_demo_on_ports_of_its_own(migrated, pool, tmp_path):
    """`scripts/run` as a newcomer with other ports runs it: web, worker, scheduler and simulator
    under honcho, the workers calling the simulator on the port it was given; then SIGTERM to
    `paycell dev` stops every process and frees the ports (`--exit-after-demo` stops them the same
    way, through the same `finally`)."""
    # Without the suite's simulator address, connector credentials and routes: `paycell dev` makes its own.
    own = {"PAYCELL_PSP_SIM_URL", "PAYCELL_PSP_SIM_WEBHOOK_BASE_URL", "PAYCELL_PSP_ROUTES",
           *sims.connector_env("http://unused"),
           "PAYCELL_RISK_RULES_FILE"}  # the shipped default rules, as a newcomer has them
    env = {k: v for k, v in os.environ.items() if k not in own}
    # A Redis database of its own, so the suite's worker (which calls the suite's simulator) can
    # never take this stack's messages: the workers `paycell dev` starts must do the work.
    base, _, db = migrated.redis_url.rpartition("/")
    redis_url = f"{base}/{int(db) + 3}"
    redis.Redis.from_url(redis_url).flushdb()
    await no_periodic_job_overdue(pool)
    env.update(PAYCELL_HTTP_PORT=str(_free_port()), PAYCELL_PSP_SIM_PORT=str(_free_port()),
               PAYCELL_REDIS_URL=redis_url)
    paycell = os.path.join(os.path.dirname(sys.executable), "paycell")
    out_path, err_path = tmp_path / "dev.out", tmp_path / "dev.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen([paycell, "dev"], env=env, stdout=out, stderr=err, start_new_session=True)
    try:
        # The demo ran and everything keeps running ...
        deadline = time.monotonic() + 180
        while "paycell is running" not in out_path.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, out_path.read_text()[-3000:] + err_path.read_text()[-3000:]
            time.sleep(0.2)
        assert "paycell is running" in out_path.read_text(), out_path.read_text()[-3000:]
        # ... until a supervisor sends SIGTERM to `paycell dev` alone: every child stops with it.
        children = _descendants(proc.pid)
        assert len(children) >= 5, children  # honcho, web, the worker's processes, scheduler, simulator
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(40)
        assert proc.returncode == 128 + signal.SIGTERM and time.monotonic() - started < 15
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    assert [pid for pid in children if _alive(pid)] == []
    for port in (env["PAYCELL_HTTP_PORT"], env["PAYCELL_PSP_SIM_PORT"]):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a server restarting would
            s.bind(("127.0.0.1", int(port)))
            s.listen()  # nobody listens there any more
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out_path.read_text(), err_path.read_text())
    lines = [line for line in done.stdout.splitlines() if " USD  " in line]
    assert [line.rsplit(": HTTP ", 1)[1] for line in lines] == [
        "201 succeeded", "201 succeeded", "201 succeeded", "201 succeeded", "201 failed (card_declined)"], \
        done.stdout[-3000:]
    assert _risk_lines(done.stdout) == RISK_LINES, done.stdout[-3000:]
    # (honcho's process logs share stdout with the demo: a log line may land inside a demo line)
    scheduled = [line for line in done.stdout.splitlines() if "  scheduled run at " in line]
    assert len(scheduled) == 1 and ": succeeded (payment " in scheduled[0], \
        "\n".join(line for line in done.stdout.splitlines() if "schedule" in line)[-3000:]
    assert "  schedule cancelled (its payment stays)" in done.stdout
    assert "ledger check: OK" in done.stdout
    redis.Redis.from_url(redis_url).flushdb()
    await assert_ledger_clean(pool)
