"""End to end: payments per second through the whole system, and latency at a fixed rate.

    .venv/bin/python bench/e2e.py                          # 64 clients x 20 s, then 50 rps x 20 s
    .venv/bin/python bench/e2e.py --duration 10 --profile  # py-spy on web, worker and psp-sim in phase A
    .venv/bin/python bench/e2e.py --users 7000 --model     # the default rules and a trained model, on
                                                           # 7000 users paying at a believable pace

A figure, not a test. It starts the Procfile's processes itself (`paycell web`,
`paycell worker --processes 2 --threads 8`, `paycell psp-sim`; not the scheduler) on free ports,
against its own database `paycell_bench_e2e` (dropped, recreated and migrated with
`paycell migrate` at every start) and its own Redis database 2 (flushed at start). Children log
at PAYCELL_LOG_LEVEL=warning (`--log-level`) into files under a temp dir; they are always
stopped at the end, on error and on Ctrl-C too.

  risk     the rules in force are `--rules` (default: paycell/rules/default.rules; `none`: a rule
           set without rules, bench/no.rules); `--model` trains a fraud model on synthetic payments
           (`paycell risk train --synthetic`) and promotes it before the load. The default rules
           and the model judge each user's pace: with one user per client (64 users paying ~5
           times a second each) they rightly see card testing, so with them give `--users` enough
           users that each pays about once per phase (phase B's users follow phase A's). Users are
           made existing customers (registered 400 days, instruments attached 200 days before).
           Payments parked for review are reported, not waited for.
  setup    one client per user unless --users. Each user's wallet and payout-hold accounts and the simulator's
           clearing slices are created first (paycell's AccountBook, committed), so that phase A
           measures existing users; `--cold-accounts` leaves that to the pipeline instead (it
           then trips over the AccountBook caching ids of uncommitted accounts: see
           bench/README.md). Each user attaches tok_card_ok and tok_bank_ok through the API
           (which also registers the user, so others may transfer to them). Each user is funded
           with one pay-in, and the bench waits until
           every funding payment is done (this also proves the worker is up)
  phase A  throughput: `--clients` concurrent closed-loop clients for `--duration` s, each POSTing
           a mix of pay-ins (tok_card_ok -> own wallet), transfers (own wallet -> another
           client's wallet) and pay-outs (own wallet -> tok_bank_ok), `--mix` 50/25/25, through
           one aiohttp ClientSession. Accept latency = POST -> 202 at the client. Then it waits
           until every payment is terminal. completed/s = payments terminal / (last
           payment_request.updated_at - first created_at); time to completion per payment =
           updated_at - created_at (both from Postgres; updated_at is the final transaction's
           start, so it is short by that transaction's own duration)
  phase B  latency: an open loop of `--rate` POSTs/s (sends scheduled on a clock, latency
           measured from the scheduled time, so a stalled client cannot hide a stall) for
           `--duration` s, same mix; then again until every payment is terminal
  phase C  overload (`--overload X`): an open loop at X times phase A's completed/s for
           `--duration` s. Admission control (paycell/admission) sheds new payments with 503
           pipeline_behind once the workers' backlog is older than 30 % of PAYCELL_ADMISSION_TTC_MS_MAX
           (set it in the environment); reported: offered, accepted, shed, the accepted payments'
           time to completion, and how many shed requests left a row (must be 0). In phase A a
           client refused so waits 0.5 s before its next POST
  commits  pg_stat_database.xact_commit of the bench database over phase A (load + drain),
           divided by phase A's payments. That raw count includes read-only transactions
           (asyncpg's reset query on every pool release, the charge step's read of the order,
           the bench's own drain polls, which are subtracted). Durable (writing) commits per
           payment are derived from the event log: each writing transaction of the pipeline
           appends exactly one of payment.requested, order.risk_checked, order.blocked,
           order.psp_succeeded/psp_failed/psp_pending, order.psp_attempt_failed,
           order.posting_failed (settle), order.needs_attention.
  messages Dramatiq messages per payment, derived from the event log: screen = 1 per payment,
           charge = 1 per order.psp_submitting + one per retry (order.psp_attempt_failed) + one per
           poll (order.psp_pending), settle = 1 per order.posting_failed, plus one per Dramatiq
           retry (its `Retrying message` lines in the worker log: the event log does not see
           a step that rolled back). Beside it, Redis
           EVALSHA calls (Dramatiq's Lua: enqueue, fetch, ack) per payment, from INFO
           commandstats: server-wide, so other users of that Redis inflate it.
  CPU      CPU seconds per process over phase A (load + drain) from /proc, per payment: web,
           worker (all processes), psp-sim, this client, the Postgres backends of the bench
           database, redis-server (INFO cpu), and the whole machine's busy time (noisy
           neighbours included): on 2 cores, total CPU ms per payment bounds payments/s.

At the end: `paycell ledger check` on the bench database, and one table of figures beside the
targets (>= 250 completed/s; p99 accept <= 50 ms at 50 rps; <= 3 commits and <= 3 messages per
payment).

`--profile` attaches `py-spy record --gil --nonblocking --format raw` (installed into the venv
with pip if missing; needs ptrace, i.e. root) to web, worker (with --subprocesses) and psp-sim
for phase A, keeps the collapsed stacks in `--profile-dir` and prints, per process, where the
samples go (inclusive share per library/area and thread, the top functions by self time, the
paycell functions by inclusive time). --gil samples only the thread holding the GIL: without
it py-spy counts threads parked in Condition.wait/time.sleep/epoll as busy on this machine.
A profiled run is slower: take the figures from a run without it.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import platform
import random
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402
import msgspec  # noqa: E402
import redis  # noqa: E402

from paycell.config import load  # noqa: E402
from paycell.config.settings import with_database  # noqa: E402
from paycell.http.auth import issue_token  # noqa: E402
from paycell.psp import sims  # noqa: E402
from paycell.store.accounts import AccountBook  # noqa: E402

BENCH_DB = "paycell_bench_e2e"
REDIS_DB = 2
PAYMENTS = "/payments/payment/v1"
INSTRUMENTS = "/payments/instrument/v1"
FUNDING = "400.00"             # per user, one pay-in before phase A (under the default rules' 500.00 review
                               # of a large first pay-in on a new card)
AMOUNTS = {"payin": "5.00", "transfer": "1.00", "payout": "2.00"}
# --connector: the card pay-ins' (and the fundings') token and the connector it is attached on.
# Pay-outs stay on the `test` connector (bank_account): Stripe carries no pay-outs here.
PAYIN_VIA = {"test": ("tok_card_ok", "test"), "stripe": ("pm_card_visa", "stripe")}
TARGETS = {"completed_s": 250, "p99_accept_rate_ms": 50, "commits": 3, "messages": 3}
CLK_TCK = os.sysconf("SC_CLK_TCK")
EMPTY_RULES = Path(__file__).resolve().parent / "no.rules"  # --rules none: a rule set without rules
VENV_BIN = Path(sys.executable).parent
# Event types each writing transaction of the pipeline appends exactly once (see the docstring).
COMMIT_EVENTS = ("payment.requested", "order.risk_checked", "order.blocked", "order.psp_succeeded",
                 "order.psp_failed", "order.psp_pending", "order.psp_attempt_failed", "order.posting_failed",
                 "order.needs_attention")


# -- environment ------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_redis_db(url: str, db: int) -> str:
    m = re.match(r"^(rediss?://[^/?]*)(/\d*)?(\?.*)?$", url)
    if not m:
        raise SystemExit(f"cannot put a database number into PAYCELL_REDIS_URL={url!r}")
    return f"{m[1]}/{db}{m[3] or ''}"


def bench_environ(log_level: str, connector: str = "test", rules: str = "default") -> dict[str, str]:
    """PAYCELL_* for this process and its children: own database, Redis db, ports, log level;
    every connector pointed at its simulator, card pay-ins routed to `connector`; the risk rules
    in force (`default`: the shipped file; `none`: an empty rule set; else a rule file's path)."""
    base = load()
    http_port, sim_port = free_port(), free_port()
    env = {
        "PAYCELL_ADMIN_DATABASE_URL": with_database(base.admin_database_url, BENCH_DB),
        "PAYCELL_REDIS_URL": with_redis_db(base.redis_url, REDIS_DB),
        "PAYCELL_HTTP_HOST": "127.0.0.1",
        "PAYCELL_HTTP_PORT": str(http_port),
        "PAYCELL_PSP_SIM_PORT": str(sim_port),
        "PAYCELL_PSP_SIM_URL": f"http://127.0.0.1:{sim_port}",
        "PAYCELL_LOG_LEVEL": log_level,
        # Rate limits above the bench's load (64 clients, ~650 POSTs/s in all, every pay-in from
        # tok_card_ok), so that it measures the payment path with its checks, never a 429.
        "PAYCELL_RATE_USER_PAYMENTS_PER_MINUTE": "1000000",
        "PAYCELL_RATE_INSTRUMENT_PAYMENTS_PER_MINUTE": "10000000",
        "PAYCELL_INSTRUMENT_DECLINES_MAX": "100000",
        "PAYCELL_PREFER_WAIT_PER_USER_MAX": "10000",
        # paycell ships no JWT secret: the one in the environment, else a fresh one for this run.
        "PAYCELL_JWT_SECRET": os.environ.get("PAYCELL_JWT_SECRET") or secrets.token_urlsafe(32),
        "PAYCELL_RISK_RULES_FILE": {"default": "", "none": str(EMPTY_RULES)}.get(rules, rules),
    }
    if base.database_url:
        env["PAYCELL_DATABASE_URL"] = with_database(base.database_url, BENCH_DB)
    env.update(sims.connector_env(env["PAYCELL_PSP_SIM_URL"]))
    # A provider simulator sends its webhooks to the API, as the provider would: their cost (the
    # inbox's insert, the apply actor's no-op on a completed order) is part of the connector's.
    env["PAYCELL_PSP_SIM_WEBHOOK_BASE_URL"] = f"http://127.0.0.1:{http_port}"
    if connector != "test":
        env["PAYCELL_PSP_ROUTES"] = f"card={connector}"
    return env


def reset_stores(settings, database: str = BENCH_DB) -> None:
    """Drop and recreate the bench database, flush the bench Redis db, `paycell migrate`."""
    async def recreate():
        admin = await asyncpg.connect(with_database(settings.admin_database_url, "postgres"))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{database}"')
        finally:
            await admin.close()
    asyncio.run(recreate())
    redis.Redis.from_url(settings.redis_url).flushdb()
    out = subprocess.run([str(VENV_BIN / "paycell"), "migrate"], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"paycell migrate failed:\n{out.stdout}{out.stderr}")


def train_model() -> None:
    """--model: `paycell risk train --synthetic` on the bench database (promoted: the first model)."""
    t0 = time.perf_counter()
    out = subprocess.run([str(VENV_BIN / "paycell"), "risk", "train", "--synthetic", "--users", "2000", "--days",
                          "30", "--trained-by", "bench"], capture_output=True, text=True)
    if out.returncode != 0 or "promoted" not in out.stdout:
        raise SystemExit(f"paycell risk train failed:\n{out.stdout}{out.stderr}")
    auc = re.search(r"ROC AUC ([0-9.]+)", out.stdout)
    print(f"model: trained on synthetic payments and promoted (held-out ROC AUC {auc[1] if auc else '?'}) "
          f"in {time.perf_counter() - t0:.1f} s", flush=True)


# -- child processes --------------------------------------------------------------------------

class Procs:
    """The Procfile's processes (minus the scheduler), each in its own process group."""

    def __init__(self, logdir: Path, processes: int, threads: int, web_processes: int = 1):
        self.logdir = logdir
        # Several web processes share the port (PAYCELL_HTTP_REUSE_PORT: the kernel spreads the
        # client's connections over them); they count together as "web".
        self.webs = ["web", *(f"web-{n}" for n in range(2, web_processes + 1))]
        self.commands = {
            "psp-sim": ["paycell", "psp-sim"],
            **{name: ["paycell", "web"] for name in self.webs},
            "worker": ["paycell", "worker", "--processes", str(processes), "--threads", str(threads)],
        }
        self.procs: dict[str, subprocess.Popen] = {}
        self.profilers: dict[str, subprocess.Popen] = {}

    def start(self) -> None:
        env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        if len(self.webs) > 1:
            env["PAYCELL_HTTP_REUSE_PORT"] = "true"
        for name, argv in self.commands.items():
            log = open(self.logdir / f"{name}.log", "wb")
            self.procs[name] = subprocess.Popen([str(VENV_BIN / argv[0]), *argv[1:]], stdout=log,
                                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
            log.close()

    def wait_ready(self, urls: dict[str, str], timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        for name, url in urls.items():
            while True:
                self.check_alive()
                try:
                    with urllib.request.urlopen(url, timeout=1):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"{name} did not answer {url} within {timeout_s:g} s") from None
                    time.sleep(0.2)

    def check_alive(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                tail = (self.logdir / f"{name}.log").read_text(errors="replace")[-2000:]
                raise SystemExit(f"{name} exited with {p.returncode}; its log ends:\n{tail}")

    def retries_logged(self) -> int:
        """Dramatiq's `Retrying message` lines in the worker log (its own logger stays at INFO)."""
        with open(self.logdir / "worker.log", "rb") as f:
            return sum(line.count(b"] Retrying message ") for line in f)

    def tree(self, name: str) -> list[int]:
        """The pids of a child and all its descendants."""
        root = self.procs[name].pid
        parents = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    stat = Path(f"/proc/{d}/stat").read_text()
                except OSError:
                    continue
                parents[int(d)] = int(stat.rsplit(")", 1)[1].split()[1])
        found, frontier = [root], [root]
        while frontier:
            kids = [pid for pid, ppid in parents.items() if ppid in frontier]
            found += kids
            frontier = kids
        return found

    # py-spy ------------------------------------------------------------------------------------
    def start_profilers(self, outdir: Path, rate: int) -> None:
        pyspy = ensure_pyspy()
        for name in self.commands:
            # --gil: only the thread holding the GIL is sampled, i.e. Python actually running. Without
            # it py-spy counts threads parked in Condition.wait, time.sleep and epoll as busy here.
            argv = [pyspy, "record", "--pid", str(self.procs[name].pid), "--rate", str(rate), "--nonblocking",
                    "--gil", "--format", "raw", "-o", str(outdir / f"{name}.txt")]
            if name == "worker":
                argv.append("--subprocesses")
            log = open(self.logdir / f"py-spy-{name}.log", "wb")
            self.profilers[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                                    start_new_session=True)
            log.close()

    def stop_profilers(self) -> None:
        for p in self.profilers.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        for name, p in self.profilers.items():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                print(f"py-spy for {name} did not stop; killed", file=sys.stderr)
        self.profilers.clear()

    def stop(self) -> None:
        self.stop_profilers()
        for p in self.procs.values():
            if p.poll() is None:  # the main process only: dramatiq's forwards it to its workers
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for name, p in self.procs.items():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop on SIGTERM; killing its process group", file=sys.stderr)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def ensure_pyspy() -> str:
    path = VENV_BIN / "py-spy"
    if not path.exists():
        print("installing py-spy into the venv ...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True)
    return str(path)


# -- CPU accounting ---------------------------------------------------------------------------

def proc_cpu_s(pids) -> tuple[float, float]:
    """(user, system) CPU seconds of `pids`."""
    user = system = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user, system = user + int(fields[11]), system + int(fields[12])
    return user / CLK_TCK, system / CLK_TCK


def machine_busy_s() -> tuple[float, float]:
    """(user + nice, system + irq + softirq + steal) CPU seconds of the whole machine since boot."""
    f = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (f[0] + f[1]) / CLK_TCK, (f[2] + f[5] + f[6] + f[7]) / CLK_TCK


class CpuMeter:
    """CPU seconds per role between two snapshots."""

    def __init__(self, procs: Procs, rds: redis.Redis, admin: asyncpg.Connection):
        self.procs, self.rds, self.admin = procs, rds, admin
        self.pg_pids: set[int] = set()

    async def snapshot(self) -> dict[str, tuple[float, float]]:
        self.pg_pids |= {r["pid"] for r in await self.admin.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1", BENCH_DB)}
        cpu = {name: proc_cpu_s(self.procs.tree(name)) for name in ("worker", "psp-sim")}
        cpu["web"] = proc_cpu_s([pid for name in self.procs.webs for pid in self.procs.tree(name)])
        own = os.times()
        cpu["client (this bench)"] = (own.user, own.system)
        cpu["postgres (bench db backends)"] = proc_cpu_s(self.pg_pids)
        info = self.rds.info("cpu")
        cpu["redis-server"] = (float(info["used_cpu_user"]), float(info["used_cpu_sys"]))
        cpu["machine busy (all)"] = machine_busy_s()
        return cpu

    async def delta(self, before) -> dict[str, tuple[float, float]]:
        after = await self.snapshot()  # Postgres backends born in the window count from zero
        return {k: tuple(a - b for a, b in zip(after[k], before.get(k, (0.0, 0.0)))) for k in after}


# -- load -------------------------------------------------------------------------------------

CUSTOMER_AGE_DAYS, INSTRUMENT_AGE_DAYS = 400, 200
SETUP_CONCURRENCY = 64  # setup requests in flight at once: below the web's own admission bound
SETUP_ATTEMPTS = 20


async def bounded_gather(coros) -> None:
    """Await every coroutine, at most SETUP_CONCURRENCY at a time."""
    gate = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def one(coro):
        async with gate:
            await coro
    await asyncio.gather(*(one(c) for c in coros))


class Users:
    def __init__(self, settings, n: int, connector: str = "test"):
        self.payin_token, self.payin_connector = PAYIN_VIA[connector]
        run = uuid.uuid4().hex[:8]
        self.ids = [f"e2e-{run}-{i}" for i in range(n)]
        self.headers = {u: {"Authorization": f"Bearer {issue_token(settings, u)}",
                            "Content-Type": "application/json"} for u in self.ids}

    def body(self, kind: str, i: int) -> bytes:
        user = self.ids[i]
        if kind == "payin":
            src, dst, option, amount = self.payin_token, f"wallet:{user}", "card", AMOUNTS["payin"]
        elif kind == "transfer":
            other = self.ids[(i + random.randrange(1, len(self.ids))) % len(self.ids)]
            src, dst, option, amount = f"wallet:{user}", f"wallet:{other}", "wallet", AMOUNTS["transfer"]
        else:
            src, dst, option, amount = f"wallet:{user}", "tok_bank_ok", "bank_account", AMOUNTS["payout"]
        return msgspec.json.encode({"payment_id": str(uuid.uuid4()), "user_id": user, "from_acct": src,
                                    "to_acct": dst, "amount": amount, "currency": "USD", "payment_option": option})


class Tally:
    def __init__(self):
        self.latencies_ms: list[float] = []
        self.payment_ids: list[str] = []
        self.kinds: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self.error_samples: list[str] = []
        self.shed_ids: list[str] = []  # refused with 503 pipeline_behind or overloaded
        self.shed: collections.Counter[str] = collections.Counter()  # by error code

    async def post(self, session, base, users: Users, kind: str, i: int, started: float | None = None):
        body = users.body(kind, i)
        t0 = time.perf_counter() if started is None else started
        try:
            async with session.post(base + PAYMENTS, data=body, headers=users.headers[users.ids[i]]) as resp:
                payload = await resp.read()
                if resp.status == 202:
                    self.latencies_ms.append((time.perf_counter() - t0) * 1000)
                    self.payment_ids.append(msgspec.json.decode(payload)["payment_id"])
                    self.kinds[kind] += 1
                    return
                if resp.status == 503 and (b'"pipeline_behind"' in payload or b'"overloaded"' in payload):
                    # A load answer (the pipeline is behind, or this web process is at its cap of
                    # concurrent requests): shed, not an error; phase C checks it left no row.
                    self.shed_ids.append(msgspec.json.decode(body)["payment_id"])
                    self.shed[msgspec.json.decode(payload)["error"]["code"]] += 1
                    return
                self.errors[str(resp.status)] += 1
                if len(self.error_samples) < 5:
                    self.error_samples.append(f"{resp.status} {payload[:200]!r}")
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            self.errors[type(exc).__name__] += 1
            if len(self.error_samples) < 5:
                self.error_samples.append(repr(exc)[:200])


SHED_BACKOFF_S = 0.5  # a phase A client refused with 503 pipeline_behind waits this long before its next POST


def pick(mix: tuple[int, int, int]) -> str:
    return random.choices(("payin", "transfer", "payout"), weights=mix)[0]


async def closed_loop(session, base, users: Users, mix, duration_s: float, clients: int) -> tuple[Tally, float]:
    tally = Tally()
    t_end = time.perf_counter() + duration_s

    async def client(i):
        # Client i speaks for users i, i + clients, i + 2 * clients, ... in turn (one user per
        # client unless --users is larger than --clients).
        j = i
        while time.perf_counter() < t_end:
            shed = len(tally.shed_ids)
            await tally.post(session, base, users, pick(mix), j)
            j = (j + clients) % len(users.ids)
            if len(tally.shed_ids) > shed:  # admission control said the pipeline is behind: back off
                await asyncio.sleep(SHED_BACKOFF_S)

    t0 = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return tally, time.perf_counter() - t0


async def open_loop(session, base, users: Users, mix, rate: float, duration_s: float,
                    first_user: int = 0) -> tuple[Tally, float]:
    tally = Tally()
    tasks = set()
    lag_ms: list[float] = []
    t0 = time.perf_counter() + 0.05
    for k in range(int(rate * duration_s)):
        at = t0 + k / rate
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        lag_ms.append((time.perf_counter() - at) * 1000)
        task = asyncio.create_task(tally.post(session, base, users, pick(mix), (first_user + k) % len(users.ids),
                                              started=at))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    return tally, statistics.quantiles(lag_ms, n=100)[98] if len(lag_ms) > 1 else 0.0


# -- database figures -------------------------------------------------------------------------

class Db:
    """The bench's own connection to the bench database; counts its own transactions."""

    def __init__(self, conn: asyncpg.Connection):
        self.conn, self.queries = conn, 0

    async def processing(self) -> int:
        self.queries += 1
        # A payment the risk step parked for a human (order in_review) waits for no worker. Two
        # counts, not an anti-join: this poll runs during the load and its cost is Postgres's.
        return await self.conn.fetchval(
            """SELECT (SELECT count(*) FROM payment_request WHERE status = 'processing')
                    - (SELECT count(*) FROM payment_order WHERE payment_order_status = 'in_review')""")

    async def drain(self, timeout_s: float) -> float:
        """Wait until no payment is processing (but those parked for review); returns the seconds waited."""
        t0 = time.perf_counter()
        while (left := await self.processing()) and time.perf_counter() - t0 < timeout_s:
            await asyncio.sleep(0.25)
        if left:
            print(f"  !! {left} payments still processing after {timeout_s:g} s", flush=True)
        return time.perf_counter() - t0

    async def completion(self, ids: list[str]) -> dict:
        self.queries += 2
        row = await self.conn.fetchrow(
            """SELECT count(*) AS n,
                      count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
                      count(*) FILTER (WHERE status = 'failed') AS failed,
                      count(*) FILTER (WHERE status NOT IN ('succeeded', 'failed')) AS other,
                      extract(epoch FROM max(updated_at) - min(created_at))::float8 AS span_s,
                      percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP
                          (ORDER BY extract(epoch FROM updated_at - created_at) * 1000) AS ttc_ms
                 FROM payment_request WHERE payment_id = ANY($1::uuid[])""", ids)
        failures = await self.conn.fetch(
            """SELECT r.kind, coalesce(r.failure_code, o.payment_order_status, r.status) AS why, count(*) AS n
                 FROM payment_request r
                 LEFT JOIN payment_order o ON o.user_id = r.user_id AND o.payment_id = r.payment_id
                WHERE r.payment_id = ANY($1::uuid[]) AND r.status <> 'succeeded' GROUP BY 1, 2""", ids)
        return {**dict(row), "failures": [dict(r) for r in failures]}

    async def event_counts(self, ids: list[str]) -> dict[str, int]:
        self.queries += 1
        rows = await self.conn.fetch(
            "SELECT type, count(*) AS n FROM event WHERE payment_id = ANY($1::uuid[]) GROUP BY type", ids)
        return {r["type"]: r["n"] for r in rows}


async def xact_commit(admin: asyncpg.Connection) -> tuple[int, int]:
    row = await admin.fetchrow("SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = $1", BENCH_DB)
    return row["xact_commit"], row["xact_rollback"]


def evalsha_calls(rds: redis.Redis) -> int:
    stats = rds.info("commandstats")
    return sum(stats.get(k, {}).get("calls", 0) for k in ("cmdstat_evalsha", "cmdstat_eval"))


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


# -- profile analysis -------------------------------------------------------------------------

AREAS = [  # (label, substring of a py-spy frame "function (file:line)"), inclusive, may overlap
    ("structlog / logging", ("structlog/", "/logging/")),
    ("asyncpg (driver, protocol)", ("asyncpg/",)),
    ("redis-py (broker I/O)", ("redis/",)),
    ("dramatiq (worker, broker, middleware)", ("dramatiq/",)),
    ("aiohttp (server or client)", ("aiohttp/",)),
    ("jwt", ("jwt/",)),
    ("thread: asyncio event loop", ("run_forever",)),
    ("thread: dramatiq worker threads", ("WorkerThread.run",)),
    ("thread: dramatiq consumer threads", ("ConsumerThread.run",)),
    ("paycell code (self time)", ()),
    ("asyncio loop (self + selectors)", ()),
]


def analyse_profile(path: Path, top: int = 12) -> list[str]:
    """Per-area inclusive shares and top self-time functions from py-spy's collapsed stacks."""
    if not path.exists() or path.stat().st_size == 0:
        return [f"  (no samples in {path})"]
    total = 0
    area = collections.Counter()
    self_time = collections.Counter()
    paycell_incl = collections.Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += n
        for label, needles in AREAS:
            if needles and any(any(nd in f for nd in needles) for f in frames):
                area[label] += n
        leaf = frames[-1]
        self_time[_short(leaf)] += n
        if "paycell/" in leaf:
            area["paycell code (self time)"] += n
        if "asyncio/" in leaf or "selectors.py" in leaf:
            area["asyncio loop (self + selectors)"] += n
        seen = set()
        for f in frames:
            if "paycell/" in f and f not in seen:
                seen.add(f)
                paycell_incl[_short(f)] += n
    lines = [f"  {total} samples of the GIL holder (Python running; waits are not sampled)"]
    for label, _ in AREAS:
        lines.append(f"    {area[label] / total:6.1%}  {label}")
    lines.append("  top functions by self time:")
    for fn, n in self_time.most_common(top):
        lines.append(f"    {n / total:6.1%}  {fn}")
    lines.append("  paycell functions by inclusive time:")
    for fn, n in paycell_incl.most_common(8):
        lines.append(f"    {n / total:6.1%}  {fn}")
    return lines


def _short(frame: str) -> str:
    m = re.match(r"^(.*) \((.*?)(?::(\d+))?\)$", frame)
    if not m:
        return frame
    fn, file, _ = m.groups()
    file = re.sub(r"^.*?(site-packages|lib/python3\.\d+)/", "", file)
    file = re.sub(r"^.*?/paycell/", "paycell/", file)
    return f"{fn} ({file})"


# -- main -------------------------------------------------------------------------------------

async def run(args, settings, procs: Procs) -> dict:
    base = f"http://{settings.http_host}:{settings.http_port}"
    rds = redis.Redis.from_url(settings.redis_url)
    admin = await asyncpg.connect(with_database(settings.admin_database_url, "postgres"))
    db = Db(await asyncpg.connect(settings.admin_database_url))
    await db.processing()  # prepare the drain poll before any counting starts
    users = Users(settings, max(args.users or args.clients, args.clients), args.connector)
    mix = tuple(args.mix)
    fig: dict = {}
    connector = aiohttp.TCPConnector(limit=max(1000, args.clients * 2))
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        # setup: the users' accounts (unless --cold-accounts), their instruments, then fund every
        # user, which also waits for the worker to be up
        t0 = time.perf_counter()
        if not args.cold_accounts:
            await create_accounts(settings, users)
        await attach_instruments(session, base, users)
        await existing_customers(settings, users)
        funding = Tally()
        await bounded_gather(_fund(funding, session, base, users, i) for i in range(len(users.ids)))
        if funding.errors:
            raise SystemExit(f"funding failed: {dict(funding.errors)} {funding.error_samples}")
        await db.drain(args.drain_timeout + 60)
        print(f"setup: {len(users.ids)} users ({'accounts created by the pipeline' if args.cold_accounts else 'accounts created first'}), funded with {FUNDING} USD each in {time.perf_counter() - t0:.1f} s",
              flush=True)
        await asyncio.sleep(1)

        # phase A
        meter = CpuMeter(procs, rds, admin)
        if args.profile:
            procs.start_profilers(args.profile_dir, args.profile_rate)
            await asyncio.sleep(1)  # let py-spy attach
        cpu0 = await meter.snapshot()
        xc0, xr0 = await xact_commit(admin)
        ev0 = evalsha_calls(rds)
        q0 = db.queries
        r0 = procs.retries_logged()
        print(f"phase A: {args.clients} clients x {args.duration:g} s, mix payin/transfer/payout "
              f"{'/'.join(map(str, mix))} ...", flush=True)
        tally_a, load_s = await closed_loop(session, base, users, mix, args.duration, args.clients)
        print(f"  load: {len(tally_a.payment_ids)} accepted in {load_s:.1f} s "
              f"({len(tally_a.payment_ids) / load_s:.0f}/s), errors {dict(tally_a.errors) or 0}", flush=True)
        drained_s = await db.drain(args.drain_timeout)
        print(f"  drained {drained_s:.1f} s after the load ended", flush=True)
        cpu = await meter.delta(cpu0)
        if args.profile:
            procs.stop_profilers()
        own = db.queries - q0
        fig["retries"] = procs.retries_logged() - r0
        evals = evalsha_calls(rds) - ev0
        await asyncio.sleep(args.stats_settle)  # idle backends flush their pg_stat counters within ~10 s
        xc1, xr1 = await xact_commit(admin)
        procs.check_alive()
        fig["A"] = await db.completion(tally_a.payment_ids)
        fig["A_events"] = await db.event_counts(tally_a.payment_ids)
        fig["A_tally"], fig["A_load_s"], fig["A_drain_s"] = tally_a, load_s, drained_s
        fig["xact"] = (xc1 - xc0 - own, xr1 - xr0, own)
        fig["evalsha"] = evals
        fig["cpu"] = cpu

        # phase B
        print(f"phase B: open loop at {args.rate:g} payments/s x {args.duration:g} s ...", flush=True)
        # Phase B's users follow the last phase A spoke for (when --users leaves enough): a user's
        # next payment seconds after its last is a velocity the rules and the model look at.
        tally_b, lag_p99 = await open_loop(session, base, users, mix, args.rate, args.duration,
                                           first_user=len(tally_a.payment_ids) + args.clients)
        print(f"  {len(tally_b.payment_ids)} accepted, errors {dict(tally_b.errors) or 0}, "
              f"send lag p99 {lag_p99:.1f} ms", flush=True)
        await db.drain(args.drain_timeout)
        fig["B"] = await db.completion(tally_b.payment_ids)
        fig["B_tally"], fig["B_lag_p99"] = tally_b, lag_p99

        if args.overload:
            # phase C: an open loop at --overload times what phase A completed per second.
            a = fig["A"]
            rate = args.overload * (a["succeeded"] + a["failed"]) / a["span_s"]
            print(f"phase C: open loop at {rate:.0f} payments/s ({args.overload:g}x phase A's completions) "
                  f"x {args.duration:g} s ...", flush=True)
            first = len(tally_a.payment_ids) + len(tally_b.payment_ids) + 2 * args.clients
            tally_c, lag_c = await open_loop(session, base, users, mix, rate, args.duration, first_user=first)
            print(f"  {len(tally_c.payment_ids)} accepted, {len(tally_c.shed_ids)} shed {dict(tally_c.shed)}, "
                  f"errors {dict(tally_c.errors) or 0}, send lag p99 {lag_c:.1f} ms", flush=True)
            await db.drain(args.drain_timeout)
            fig["C"] = await db.completion(tally_c.payment_ids)
            fig["C_tally"], fig["C_rate"] = tally_c, rate
            fig["C_shed_written"] = await db.conn.fetchval(
                "SELECT count(*) FROM payment_request WHERE payment_id = ANY($1::uuid[])", tally_c.shed_ids)
    await db.conn.close()
    await admin.close()
    return fig


async def create_accounts(settings, users: Users) -> None:
    """Every account the load will touch, committed before any step runs: each user's wallet and
    payout hold, and the simulator's clearing slices (paycell's AccountBook, autocommit)."""
    conn = await asyncpg.connect(settings.app_database_url)
    try:
        book = AccountBook.from_settings(settings)
        for user in users.ids:
            for kind in ("user_wallet", "payout_hold"):
                await book.user_account(conn, kind, user, "USD")
        for psp in {settings.psp_default, users.payin_connector}:
            await book.system_account(conn, "psp_clearing", psp, "USD", key="warm")
    finally:
        await conn.close()


async def existing_customers(settings, users: Users) -> None:
    """Make the bench's users the platform's existing customers: registered CUSTOMER_AGE_DAYS ago,
    their instruments attached INSTRUMENT_AGE_DAYS ago (as the owner role: the app may not). A
    minute-old account paying from a minute-old card is what card testing looks like, and the
    default rules and the model treat it so; the load measures the common case."""
    owner = await asyncpg.connect(settings.admin_database_url)
    try:
        await owner.execute(f'SET ROLE "{settings.owner_role}"')
        await owner.execute("UPDATE app_user SET registered_at = now() - make_interval(days => $2) "
                            "WHERE user_id = ANY($1::text[])", users.ids, CUSTOMER_AGE_DAYS)
        await owner.execute("UPDATE instrument SET created_at = now() - make_interval(days => $2) "
                            "WHERE user_id = ANY($1::text[])", users.ids, INSTRUMENT_AGE_DAYS)
    finally:
        await owner.close()


async def attach_instruments(session, base, users: Users) -> None:
    """Every user attaches the tokens the load pays in from and out to (paycell refuses a pay-in
    or pay-out from an instrument the caller has not attached); this also registers every user,
    so each may receive transfers."""
    async def one(user: str, token: str, option: str, connector: str) -> None:
        body = msgspec.json.encode({"token": token, "payment_option": option, "connector": connector})
        for _ in range(SETUP_ATTEMPTS):  # a 503 asks to retry (attaching is idempotent)
            async with session.post(base + INSTRUMENTS, data=body, headers=users.headers[user]) as resp:
                if resp.status == 503:
                    await asyncio.sleep(0.5)
                    continue
                if resp.status not in (200, 201):
                    raise SystemExit(f"attaching {token} for {user} failed: {resp.status} "
                                     f"{(await resp.read())[:200]!r}")
                return
        raise SystemExit(f"attaching {token} for {user}: still 503 after {SETUP_ATTEMPTS} attempts")

    instruments = ((users.payin_token, "card", users.payin_connector), ("tok_bank_ok", "bank_account", "test"))
    await bounded_gather(one(user, *instrument) for user in users.ids for instrument in instruments)


async def _fund(tally: Tally, session, base, users: Users, i: int) -> None:
    user = users.ids[i]
    body = msgspec.json.encode({"payment_id": str(uuid.uuid4()), "user_id": user, "from_acct": users.payin_token,
                                "to_acct": f"wallet:{user}", "amount": FUNDING, "currency": "USD",
                                "payment_option": "card"})
    for _ in range(SETUP_ATTEMPTS):  # a 503 asks to retry (the same payment_id: idempotent)
        async with session.post(base + PAYMENTS, data=body, headers=users.headers[user]) as resp:
            if resp.status == 503:
                await asyncio.sleep(0.5)
                continue
            if resp.status != 202:
                tally.errors[str(resp.status)] += 1
                tally.error_samples.append(f"{resp.status} {(await resp.read())[:200]!r}")
            return
    tally.errors["503"] += 1


def report(args, fig: dict, ledger_out: str) -> str:
    a, b, ta, tb = fig["A"], fig["B"], fig["A_tally"], fig["B_tally"]
    n = a["n"] or 1
    ev = fig["A_events"]
    commits_raw, rollbacks, own = fig["xact"]
    durable = sum(ev.get(t, 0) for t in COMMIT_EVENTS)
    msgs = {"screen": ev.get("payment.requested", 0),
            "charge": ev.get("order.psp_submitting", 0) + ev.get("order.psp_attempt_failed", 0)
            + ev.get("order.psp_pending", 0),
            "settle": ev.get("order.posting_failed", 0),
            "record_dead_letter": ev.get("order.needs_attention", 0),
            "Dramatiq retries (worker log)": fig["retries"]}
    completed_s = (a["succeeded"] + a["failed"]) / a["span_s"] if a["span_s"] else float("nan")
    ttc_a, ttc_b = a["ttc_ms"] or [float("nan")] * 2, b["ttc_ms"] or [float("nan")] * 2
    rows = [
        ("completed payments/s (phase A)", f"{completed_s:.0f}", f">= {TARGETS['completed_s']}",
         completed_s >= TARGETS["completed_s"]),
        ("accepted payments/s at the client (phase A)", f"{len(ta.payment_ids) / fig['A_load_s']:.0f}", "", None),
        (f"accept p50 / p99, {args.clients} clients (ms)",
         f"{pct(ta.latencies_ms, .5):.1f} / {pct(ta.latencies_ms, .99):.1f}", "", None),
        (f"accept p50 / p99 at {args.rate:g} rps (ms)",
         f"{pct(tb.latencies_ms, .5):.1f} / {pct(tb.latencies_ms, .99):.1f}",
         f"p99 <= {TARGETS['p99_accept_rate_ms']}", pct(tb.latencies_ms, .99) <= TARGETS["p99_accept_rate_ms"]),
        ("time to completion p50 / p99, phase A (ms)", f"{ttc_a[0]:.0f} / {ttc_a[1]:.0f}", "", None),
        (f"time to completion p50 / p99 at {args.rate:g} rps (ms)", f"{ttc_b[0]:.0f} / {ttc_b[1]:.0f}", "", None),
        ("durable commits/payment (event-derived)", f"{durable / n:.2f}", f"<= {TARGETS['commits']}",
         durable / n <= TARGETS["commits"]),
        ("xact_commit/payment (raw, incl. read-only)", f"{commits_raw / n:.2f}", "", None),
        ("messages/payment (event-derived)", f"{sum(msgs.values()) / n:.2f}", f"<= {TARGETS['messages']}",
         sum(msgs.values()) / n <= TARGETS["messages"]),
        ("Redis EVALSHA/payment (server-wide)", f"{fig['evalsha'] / n:.2f}", "", None),
    ]
    out = []
    w = max(len(r[0]) for r in rows)
    out.append(f"{'figure':<{w}}  {'measured':>14}  {'target':<12} ")
    for name, value, target, ok in rows:
        mark = "" if ok is None else ("ok" if ok else "MISSED")
        out.append(f"{name:<{w}}  {value:>14}  {target:<12} {mark}")
    out.append("")
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(ta.kinds.items()))
    out.append(f"phase A: {a['n']} payments ({kinds}); succeeded {a['succeeded']}, failed {a['failed']}, "
               f"other {a['other']}; first accept -> last completion {a['span_s']:.1f} s "
               f"(load {fig['A_load_s']:.1f} s, drain {fig['A_drain_s']:.1f} s); HTTP errors {dict(ta.errors) or 0}")
    if a["failures"]:
        out.append(f"  not succeeded: {a['failures']}")
    out.append(f"phase B: {b['n']} payments; succeeded {b['succeeded']}, failed {b['failed']}, other {b['other']}; "
               f"send lag p99 {fig['B_lag_p99']:.1f} ms; HTTP errors {dict(tb.errors) or 0}")
    if ta.shed_ids or tb.shed_ids:
        out.append(f"shed (503 pipeline_behind or overloaded): phase A {dict(ta.shed)}, phase B {dict(tb.shed)}")
    if "C" in fig:
        c, tc = fig["C"], fig["C_tally"]
        ttc_c = c["ttc_ms"] or [float("nan")] * 2
        offered = len(tc.payment_ids) + len(tc.shed_ids) + sum(tc.errors.values())
        out.append(f"phase C (overload: {fig['C_rate']:.0f}/s offered, {args.overload:g}x phase A's completions): "
                   f"{offered} offered, {len(tc.payment_ids)} accepted, {len(tc.shed_ids)} shed "
                   f"({len(tc.shed_ids) / (offered or 1):.0%}: {dict(tc.shed)}), HTTP errors {dict(tc.errors) or 0}; accepted: "
                   f"succeeded {c['succeeded']}, failed {c['failed']}, other {c['other']}; time to completion "
                   f"p50 / p99 {ttc_c[0]:.0f} / {ttc_c[1]:.0f} ms (bound: PAYCELL_ADMISSION_TTC_MS_MAX); "
                   f"shed requests that left a row: {fig['C_shed_written']}")
    for sample in ta.error_samples + tb.error_samples + (fig["C_tally"].error_samples if "C" in fig else []):
        out.append(f"  error sample: {sample}")
    out.append(f"commits over phase A: xact_commit {commits_raw} (bench's own {own} drain polls subtracted), "
               f"xact_rollback {rollbacks}; writing transactions by event: "
               + ", ".join(f"{t} {ev[t]}" for t in COMMIT_EVENTS if ev.get(t)))
    out.append(f"  read-only remainder {(commits_raw - durable) / n:.2f}/payment (asyncpg pool reset on every "
               "release, the charge step's read of the order)")
    out.append("messages over phase A: " + ", ".join(f"{k} {v}" for k, v in msgs.items())
               + f"; Redis EVALSHA {fig['evalsha']} (server-wide)")
    cpu = fig["cpu"]
    window = fig["A_load_s"] + fig["A_drain_s"]
    out.append(f"CPU over phase A ({window:.1f} s, {os.cpu_count()} cores = {window * os.cpu_count():.0f} "
               "CPU-s available):")
    ours = 0.0
    for k, (user, system) in cpu.items():
        v = user + system
        if k != "machine busy (all)":
            ours += v
        out.append(f"  {k:<30} {v:7.1f} s  {v * 1000 / n:6.2f} ms/payment  (system {system / v if v else 0:4.0%})")
    out.append(f"  {'sum of the bench processes':<30} {ours:7.1f} s  {ours * 1000 / n:6.2f} ms/payment "
               f"-> ceiling ~{os.cpu_count() * n / ours:.0f} payments/s on {os.cpu_count()} idle cores"
               if ours else "")
    out.append(f"  others on the machine meanwhile: {sum(cpu['machine busy (all)']) - ours:.1f} CPU-s")
    out.append("")
    out.append(ledger_out.strip())
    return "\n".join(out)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.update(bench_environ(args.log_level, args.connector, args.rules))
    settings = load()
    print(f"paycell e2e bench: database {BENCH_DB}, Redis {settings.redis_url}, web :{settings.http_port}, "
          f"psp-sim :{settings.psp_sim_port}, worker --processes {args.processes} --threads {args.threads}, "
          f"log level {args.log_level}{', py-spy' if args.profile else ''}; load average {os.getloadavg()[0]:.1f}",
          flush=True)
    logdir = Path(tempfile.mkdtemp(prefix="paycell-e2e-"))
    if args.profile:
        args.profile_dir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    reset_stores(settings)
    if args.model:
        train_model()
    procs = Procs(logdir, args.processes, args.threads, args.web_processes)
    fig = None
    try:
        procs.start()
        procs.wait_ready({"psp-sim": f"{settings.psp_sim_url}/v1/stats",
                          "web": f"http://{settings.http_host}:{settings.http_port}/health"})
        fig = asyncio.run(run(args, settings, procs))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        procs.stop()
        if fig is None or args.keep_logs:
            print(f"child logs: {logdir}", flush=True)
    check = subprocess.run([str(VENV_BIN / "paycell"), "ledger", "check"], capture_output=True, text=True)
    print()
    print(report(args, fig, check.stdout + check.stderr))
    if args.profile:
        for name in ("web", "worker", "psp-sim"):
            print(f"\nprofile of {name} during phase A ({args.profile_dir / (name + '.txt')}):")
            print("\n".join(analyse_profile(args.profile_dir / f"{name}.txt")))
    noisy = [f"{k} {v}" for k, v in _log_levels(logdir).items()]
    if noisy:
        print(f"\nchild log lines by level: {', '.join(noisy)}")
    print(f"\n{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, load average now "
          f"{os.getloadavg()[0]:.1f}, Python {platform.python_version()}, aiohttp {aiohttp.__version__}, "
          f"asyncpg {asyncpg.__version__}")
    if not args.keep_logs:
        shutil.rmtree(logdir, ignore_errors=True)
    return check.returncode


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _log_levels(logdir: Path) -> dict[str, int]:
    counts = collections.Counter()
    for f in logdir.glob("*.log"):
        for line in f.read_text(errors="replace").splitlines():
            m = re.search(r'"level":\s*"(\w+)"', line)
            counts[m[1] if m else "other"] += 1
    return dict(counts)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients in phase A (default 64)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load per phase (default 20)")
    parser.add_argument("--rate", type=float, default=50.0, help="payments/s in phase B (default 50)")
    parser.add_argument("--mix", type=lambda s: [int(v) for v in s.split("/")], default=[50, 25, 25],
                        help="pay-in/transfer/pay-out weights (default 50/25/25)")
    parser.add_argument("--connector", choices=sorted(PAYIN_VIA), default="test",
                        help="the connector card pay-ins go through: test (default) or stripe (the Stripe-format "
                             "simulator, through the stripe SDK, its webhooks coming back to the API)")
    parser.add_argument("--users", type=int, default=None,
                        help="users the clients pay for, in turn (default: one per client); the default rules' "
                             "velocity rules see each user's own pace")
    parser.add_argument("--rules", default="default",
                        help="risk rules in force: default (paycell/rules/default.rules), none, or a file's path")
    parser.add_argument("--model", action="store_true",
                        help="train a fraud model on synthetic payments and promote it before the load")
    parser.add_argument("--processes", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--threads", type=int, default=8, help="worker threads per process (default 8)")
    parser.add_argument("--web-processes", type=int, default=1,
                        help="`paycell web` processes sharing the port (SO_REUSEPORT; default 1)")
    parser.add_argument("--log-level", default="warning", help="PAYCELL_LOG_LEVEL of the children (default warning)")
    parser.add_argument("--drain-timeout", type=float, default=90.0,
                        help="seconds to wait for every payment to finish after a phase (default 90)")
    parser.add_argument("--stats-settle", type=float, default=11.0,
                        help="seconds to let idle backends flush pg_stat counters (default 11)")
    parser.add_argument("--cold-accounts", action="store_true",
                        help="let the pipeline create the users' accounts on first use instead of before the load")
    parser.add_argument("--profile", action="store_true", help="py-spy web, worker and psp-sim during phase A")
    parser.add_argument("--profile-dir", type=Path, default=Path("/tmp/paycell-e2e-profile"),
                        help="where py-spy's collapsed stacks go (default /tmp/paycell-e2e-profile)")
    parser.add_argument("--profile-rate", type=int, default=100, help="py-spy samples/s (default 100)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the children's log directory")
    parser.add_argument("--overload", type=float, default=None,
                        help="phase C: an open loop at this multiple of phase A's completed/s (e.g. 2), "
                             "reporting what admission control shed and the accepted payments' time to completion")
    args = parser.parse_args(argv)
    if len(args.mix) != 3 or sum(args.mix) <= 0:
        parser.error("--mix takes three weights, e.g. 50/25/25")
    return args


if __name__ == "__main__":
    sys.exit(main())
