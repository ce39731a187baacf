"""Several `paycell web` processes on one port (PAYCELL_HTTP_REUSE_PORT, SO_REUSEPORT): both bind and
serve; without the setting the second cannot bind (the control)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import _free_port

PAYCELL = os.path.join(os.path.dirname(sys.executable), "paycell")


def _start(port: int, log: Path, reuse: bool) -> subprocess.Popen:
    env = os.environ | {"PAYCELL_HTTP_PORT": str(port), "PAYCELL_LOG_FORMAT": "json",
                        "PAYCELL_HTTP_REUSE_PORT": "true" if reuse else "false"}
    with log.open("ab") as out:
        return subprocess.Popen([PAYCELL, "web"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _serving(port: int, procs: list[subprocess.Popen], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert all(p.poll() is None for p in procs)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"nothing answered on {port}")


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def _listening(pid: int, port: int) -> bool:
    """Whether process `pid` holds a listening socket on `port` (from /proc, no tool needed)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port and inode in inodes:
                return True
    return False


def test_two_web_processes_share_a_port_with_reuse_port_and_cannot_without(migrated, tmp_path):
    port = _free_port()
    procs = [_start(port, tmp_path / "web1.log", reuse=True), _start(port, tmp_path / "web2.log", reuse=True)]
    try:
        _serving(port, procs)
        deadline = time.monotonic() + 30
        while not all(_listening(p.pid, port) for p in procs):
            assert time.monotonic() < deadline, [(tmp_path / f"web{i}.log").read_text()[-2000:] for i in (1, 2)]
            assert all(p.poll() is None for p in procs)
            time.sleep(0.2)
    finally:
        _stop(procs)

    port = _free_port()
    first = _start(port, tmp_path / "web3.log", reuse=False)
    try:
        _serving(port, [first])
        second = _start(port, tmp_path / "web4.log", reuse=False)
        assert second.wait(30) != 0  # the port is taken
        assert "address already in use" in (tmp_path / "web4.log").read_text().lower()
    finally:
        _stop([first])
