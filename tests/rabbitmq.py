"""RabbitMQ for the tests: a vhost of the run's own on the machine's server, its queues' counts and
purges, and a private RabbitMQ node of the test's own that it may stop and start (the machine's
server at 127.0.0.1:5672 is shared and is never stopped here).

`rabbitmqctl` drives the server (vhosts, counts including unacknowledged messages, stop): it needs
the Erlang cookie the server runs with, which root and the rabbitmq user have on this project's
machines. Every reason to skip is said in the skip message.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pika
import pika.exceptions

RABBITMQCTL_TIMEOUT_S = 60
NODE_BOOT_TIMEOUT_S = 90
# The distribution's scripts themselves: /usr/sbin's wrappers switch to the rabbitmq user (who
# could not write the test's temp dir) and drop the environment that names the private node.
_SCRIPTS = Path("/usr/lib/rabbitmq/bin")


def _script(name: str) -> str:
    own = _SCRIPTS / name
    return str(own) if own.exists() else (shutil.which(name) or name)


def server_installed() -> bool:
    return (_SCRIPTS / "rabbitmq-server").exists() or shutil.which("rabbitmq-server") is not None


def _ctl(*args: str, node: str | None = None, timeout_s: float = RABBITMQCTL_TIMEOUT_S) -> subprocess.CompletedProcess:
    command = [shutil.which("rabbitmqctl") or "rabbitmqctl", *(("-n", node) if node else ()), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)


def unavailable(address: tuple[str, int]) -> str | None:
    """Why the machine's RabbitMQ cannot serve the tests, or None."""
    with socket.socket() as s:
        s.settimeout(2)
        if s.connect_ex(address) != 0:
            return f"nothing answers on {address[0]}:{address[1]} (start RabbitMQ there to run it)"
    if shutil.which("rabbitmqctl") is None:
        return "rabbitmqctl is not on PATH (it makes the run's own vhost)"
    probe = _ctl("list_vhosts")
    if probe.returncode != 0:
        return f"rabbitmqctl cannot reach the server (Erlang cookie?): {probe.stderr.strip()[:200]}"
    return None


def url_for(address: tuple[str, int], vhost: str) -> str:
    return f"amqp://guest:guest@{address[0]}:{address[1]}/{quote(vhost, safe='')}"


@contextlib.contextmanager
def own_vhost(address: tuple[str, int], vhost: str, node: str | None = None) -> Iterator[str]:
    _ctl("delete_vhost", vhost, node=node)  # a run killed before its teardown left it behind
    for args in (("add_vhost", vhost), ("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")):
        done = _ctl(*args, node=node)
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stderr.strip()}")
    url = url_for(address, vhost)
    try:
        pika.BlockingConnection(pika.URLParameters(url)).close()
    except pika.exceptions.AMQPError as exc:
        _ctl("delete_vhost", vhost, node=node)
        import pytest
        pytest.skip(f"RabbitMQ tests skipped: guest/guest cannot open {vhost}: {exc!r}")
    try:
        yield url
    finally:
        _ctl("delete_vhost", vhost, node=node)


def messages(vhost: str, node: str | None = None) -> dict[str, int]:
    """Every queue of `vhost` -> its messages, ready and unacknowledged (what a worker holds)."""
    done = _ctl("list_queues", "-p", vhost, "--quiet", "--no-table-headers", "name", "messages", node=node)
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl list_queues: {done.stderr.strip()}")
    counts = {}
    for line in done.stdout.splitlines():
        name, _, count = line.strip().rpartition("\t")
        if name:
            counts[name] = int(count)
    return counts


def queue_types(vhost: str) -> dict[str, str]:
    """Every queue of `vhost` -> its type (classic, quorum)."""
    done = _ctl("list_queues", "-p", vhost, "--quiet", "--no-table-headers", "name", "type")
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl list_queues: {done.stderr.strip()}")
    return dict(line.strip().rsplit("\t", 1) for line in done.stdout.splitlines() if "\t" in line)


def purge(url: str, queues: list[str]) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        for name in queues:
            channel = connection.channel()
            with contextlib.suppress(pika.exceptions.ChannelClosedByBroker):  # never declared: nothing to purge
                channel.queue_purge(name)
            if channel.is_open:
                channel.close()
    finally:
        connection.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateNode:
    """A RabbitMQ node of the test's own (its own port, node name, data and logs in a temp dir)
    that the test may stop and start again; its data survive a restart, as a server's would."""

    def __init__(self, tls: tuple[str, str, str] | None = None) -> None:
        """`tls`: (certificate chain, key, CA) files: the node also listens for amqps on `tls_port`."""
        self.port = _free_port()
        self.dist_port = _free_port()
        self.tls_port = _free_port() if tls else None
        self.name = f"paycelltest-{os.getpid()}-{self.port}@localhost"
        self.home = Path(tempfile.mkdtemp(prefix="paycell-rabbitmq-"))
        conf = f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users.guest = true\n"
        if tls:
            cert_file, key_file, ca_file = tls
            conf += (f"listeners.ssl.default = 127.0.0.1:{self.tls_port}\nssl_options.certfile = {cert_file}\n"
                     f"ssl_options.keyfile = {key_file}\nssl_options.cacertfile = {ca_file}\n"
                     "ssl_options.verify = verify_none\nssl_options.fail_if_no_peer_cert = false\n")
        (self.home / "rabbitmq.conf").write_text(conf)
        (self.home / "enabled_plugins").write_text("[].\n")
        self.home.chmod(0o700)
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def _env(self) -> dict[str, str]:
        # HOME: the node and its rabbitmqctl share an Erlang cookie of their own, made there.
        return {**os.environ, "HOME": str(self.home), "RABBITMQ_NODENAME": self.name, "RABBITMQ_NODE_PORT": str(self.port),
                "RABBITMQ_DIST_PORT": str(self.dist_port), "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_MNESIA_BASE": str(self.home / "mnesia"), "RABBITMQ_LOG_BASE": str(self.home / "log"),
                "RABBITMQ_CONFIG_FILE": str(self.home / "rabbitmq.conf"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.home / "enabled_plugins"),
                "RABBITMQ_PID_FILE": str(self.home / "node.pid")}

    def start(self) -> None:
        log = open(self.home / "server.out", "ab")
        self.proc = subprocess.Popen([_script("rabbitmq-server")], env=self._env(), stdout=log, stderr=log,
                                     start_new_session=True)
        log.close()
        done = self.ctl("wait", str(self.home / "node.pid"), "--timeout", str(NODE_BOOT_TIMEOUT_S),
                        timeout_s=NODE_BOOT_TIMEOUT_S + 10)
        if done.returncode != 0:
            raise RuntimeError(f"private RabbitMQ {self.name} did not boot: {done.stderr.strip()[:300]}; "
                               f"see {self.home}/server.out and {self.home}/log")
        deadline = time.monotonic() + NODE_BOOT_TIMEOUT_S
        while time.monotonic() < deadline:  # `wait` returns once the app runs; the listener follows
            with socket.socket() as s:
                if s.connect_ex(self.address) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"private RabbitMQ {self.name} does not listen on {self.port}")

    def ctl(self, *args: str, timeout_s: float = RABBITMQCTL_TIMEOUT_S) -> subprocess.CompletedProcess:
        return subprocess.run([_script("rabbitmqctl"), "-n", self.name, *args], env=self._env(), capture_output=True,
                              text=True, timeout=timeout_s)

    def stop(self) -> None:
        """`rabbitmqctl stop` on this node only, and wait for its process to end."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.ctl("stop")
        try:
            self.proc.wait(NODE_BOOT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(10)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)
