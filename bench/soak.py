"""Soak: does every process's memory depend on its configuration, not on how much it has served?

    nice -n 10 .venv/bin/python bench/soak.py                           # 300,000 payments, 100,000 users
    nice -n 10 .venv/bin/python bench/soak.py --payments 20000 --users 5000 --no-readme   # a short look

A figure, not a test (never part of CI). It starts the whole dev stack itself, each process in its
own process group: `paycell web`, `paycell worker --processes 2 --threads 8`, `paycell scheduler`
and `paycell psp-sim`, against its own database `paycell_soak` (dropped, recreated and migrated at
every start), Redis database 60 (flushed at start) and HTTP ports 18xxx. The risk rules in force
are the suite's block lists (tests/risk/baseline.rules): the load pays from one shared test token,
which the default velocity rules would rightly block as card testing.

The load (`--clients` closed-loop clients through one aiohttp session): the k-th payment is user
k mod `--users`'s, so every user has been seen once the first `--users` payments are in. A user's
first payment attaches their card (`POST /payments/instrument/v1`, which also registers them) and
pays in 5.00 from it; later payments are pay-ins (70 %), transfers of 1.00 to a user already
registered (15 %) and pay-outs of 2.00 to a bank account attached on first use (15 %). One POST in
`--wait-every` asks `Prefer: wait=5` (the web's waiter). `--schedules` users also get an hourly
scheduled pay-in whose first occurrence falls within the run, so the scheduler creates payments.
A 503 (admission control, overload) makes that client wait 0.5 s and send the same payment again.

Sampled every `--sample-s` seconds into `--csv`: per process (web, the worker's main process and
each of its forked workers, scheduler, psp-sim) its RSS, open file descriptors and TCP connections
to Postgres; Redis `used_memory` (the whole server: other users of that Redis show in it) and the
bench database's key count and bytes (MEMORY USAGE of every key of db 60); payments processed =
payments no longer `processing`. A progress line every `--progress-s` seconds.

Postgres: every table's pg_total_relation_size and live rows when the load starts, at the half-way
mark and at the end; bytes per payment per table = growth between the half-way mark and the end
divided by the payments processed in between (steady state: setup and warm-up excluded).
Redis: after the drain, every key left in db 60, grouped by shape (uuids and numbers masked).

At the end: a table per process (RSS at 100,000 and at the end of the run, growth, steady RSS = the
median after `--warmup` payments), the plot of RSS against payments processed (`--png`), the
tables' growth, Redis's leftovers and `paycell ledger check`; all of it replaces the part of
bench/README.md between the `soak:begin` and `soak:end` markers unless `--no-readme`.
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import datetime
import os
import platform
import random
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402
import msgspec  # noqa: E402
import psutil  # noqa: E402
import redis  # noqa: E402

import e2e  # noqa: E402  (bench/e2e.py: the child processes and the Redis URL helper)
from paycell.config import load  # noqa: E402
from paycell.config.settings import with_database  # noqa: E402
from paycell.http.auth import issue_token  # noqa: E402
from paycell.psp import sims  # noqa: E402

SOAK_DB = "paycell_soak"
REDIS_DB = 60
HTTP_PORT, SIM_PORT = 18080, 18090
HERE = Path(__file__).resolve().parent
BASELINE_RULES = HERE.parent / "tests" / "risk" / "baseline.rules"
PAYMENTS = "/payments/payment/v1"
INSTRUMENTS = "/payments/instrument/v1"
SCHEDULES = "/payments/scheduled-payment/v1"
CARD, BANK = "tok_card_ok", "tok_bank_ok"
AMOUNTS = {"first": "5.00", "payin": "5.00", "transfer": "1.00", "payout": "2.00"}
MIX = (("payin", 70), ("transfer", 15), ("payout", 15))
BACKOFF_S = 0.5
ATTEMPTS = 40
README_BEGIN, README_END = "<!-- soak:begin -->", "<!-- soak:end -->"
UUID_OR_NUMBER = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}|\d+")


def soak_environ(log_level: str) -> dict[str, str]:
    base = load()
    env = {
        "PAYCELL_ADMIN_DATABASE_URL": with_database(base.admin_database_url, SOAK_DB),
        "PAYCELL_REDIS_URL": e2e.with_redis_db(base.redis_url, REDIS_DB),
        "PAYCELL_HTTP_HOST": "127.0.0.1",
        "PAYCELL_HTTP_PORT": str(HTTP_PORT),
        "PAYCELL_PSP_SIM_PORT": str(SIM_PORT),
        "PAYCELL_PSP_SIM_URL": f"http://127.0.0.1:{SIM_PORT}",
        "PAYCELL_PSP_SIM_WEBHOOK_BASE_URL": f"http://127.0.0.1:{HTTP_PORT}",
        "PAYCELL_LOG_LEVEL": log_level,
        # Every pay-in comes from one shared test token: rate limits above the load, so that it
        # measures the payment path with its checks, never a 429.
        "PAYCELL_RATE_USER_PAYMENTS_PER_MINUTE": "1000000",
        "PAYCELL_RATE_INSTRUMENT_PAYMENTS_PER_MINUTE": "10000000",
        "PAYCELL_INSTRUMENT_DECLINES_MAX": "100000",
        "PAYCELL_JWT_SECRET": os.environ.get("PAYCELL_JWT_SECRET") or secrets.token_urlsafe(32),
        "PAYCELL_RISK_RULES_FILE": str(BASELINE_RULES),
        # The test simulator answers 503 past 100,000 charges by default; this run sends more.
        "PAYCELL_PSP_SIM_KEYS_MAX": "1000000",
    }
    if base.database_url:
        env["PAYCELL_DATABASE_URL"] = with_database(base.database_url, SOAK_DB)
    env.update(sims.connector_env(env["PAYCELL_PSP_SIM_URL"]))
    return env


class Stack(e2e.Procs):
    """bench/e2e.py's child processes plus the scheduler: the whole Procfile.dev."""

    def __init__(self, logdir: Path, processes: int, threads: int):
        super().__init__(logdir, processes, threads)
        self.commands["scheduler"] = ["paycell", "scheduler"]

    def roles(self) -> dict[str, psutil.Process]:
        """Each process to sample, by role: the worker's forked workers each on their own."""
        found = {}
        for name, popen in self.procs.items():
            try:
                root = psutil.Process(popen.pid)
                found[name] = root
                if name == "worker":
                    kids = sorted(root.children(recursive=True), key=lambda p: p.pid)
                    for i, kid in enumerate(kids, 1):
                        found[f"worker-{i}"] = kid
            except psutil.NoSuchProcess:
                continue
        return found


# -- load -------------------------------------------------------------------------------------

class Load:
    """The clients' shared state: who is registered, what each user attached, what was sent."""

    def __init__(self, settings, users: int, payments: int, wait_every: int):
        self.settings = settings
        self.run = uuid.uuid4().hex[:6]
        self.users, self.payments, self.wait_every = users, payments, wait_every
        self.next = 0
        self.accepted = 0
        self.shed = 0
        self.errors: dict[str, int] = {}
        self.error_samples: list[str] = []
        self.registered = 0  # users 0 .. registered-1 have attached their card
        self.banked: set[int] = set()
        self.tokens: dict[int, str] = {}

    def user(self, i: int) -> str:
        return f"soak-{self.run}-{i}"

    def headers(self, i: int) -> dict[str, str]:
        token = self.tokens.get(i)
        if token is None:
            token = self.tokens[i] = issue_token(self.settings, self.user(i))
        return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def error(self, what: str, detail: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1
        if len(self.error_samples) < 8:
            self.error_samples.append(detail[:200])


async def post(session, base, load: Load, path: str, i: int, body: dict, ok: tuple[int, ...],
               wait: bool = False) -> bool:
    data = msgspec.json.encode(body)
    headers = load.headers(i)
    if wait:
        headers = {**headers, "Prefer": "wait=5"}
    for _ in range(ATTEMPTS):
        try:
            async with session.post(base + path, data=data, headers=headers) as resp:
                payload = await resp.read()
                if resp.status in ok:
                    return True
                if resp.status == 503:
                    load.shed += 1
                    await asyncio.sleep(BACKOFF_S)
                    continue
                load.error(str(resp.status), f"{path} {resp.status} {payload[:160]!r}")
                return False
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            load.error(type(exc).__name__, repr(exc))
            await asyncio.sleep(BACKOFF_S)
    load.error("503 x attempts", f"{path}: still 503 after {ATTEMPTS} attempts")
    return False


def payment_body(load: Load, i: int, kind: str) -> dict:
    user = load.user(i)
    if kind in ("first", "payin"):
        src, dst, option = CARD, f"wallet:{user}", "card"
    elif kind == "transfer":
        other = (i + random.randrange(1, load.registered)) % load.registered
        src, dst, option = f"wallet:{user}", f"wallet:{load.user(other)}", "wallet"
    else:
        src, dst, option = f"wallet:{user}", BANK, "bank_account"
    return {"payment_id": str(uuid.uuid4()), "user_id": user, "from_acct": src, "to_acct": dst,
            "amount": AMOUNTS[kind], "currency": "USD", "payment_option": option}


async def client(session, base, load: Load) -> None:
    kinds, weights = zip(*MIX)
    while load.next < load.payments:
        k = load.next
        load.next += 1
        i = k % load.users
        if k < load.users:  # the user's first payment: attach the card (registers them), pay in
            if not await post(session, base, load, INSTRUMENTS, i,
                              {"token": CARD, "payment_option": "card", "connector": "test"}, (200, 201)):
                continue
            load.registered = max(load.registered, i + 1)
            kind = "first"
        else:
            kind = random.choices(kinds, weights)[0]
            if kind == "transfer" and load.registered < 2:
                kind = "payin"
        if kind == "payout" and i not in load.banked:
            if not await post(session, base, load, INSTRUMENTS, i,
                              {"token": BANK, "payment_option": "bank_account", "connector": "test"}, (200, 201)):
                continue
            load.banked.add(i)
        wait = load.wait_every > 0 and k % load.wait_every == 0
        if await post(session, base, load, PAYMENTS, i, payment_body(load, i, kind), (201, 202), wait):
            load.accepted += 1


async def make_schedules(session, base, load: Load, count: int, spread_s: float) -> int:
    """`count` users (registered here) each get an hourly pay-in whose first occurrence falls
    within the next `spread_s` seconds."""
    made = 0
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    for n in range(count):
        i = load.users - 1 - n  # the last users: their cards get attached here
        if not await post(session, base, load, INSTRUMENTS, i,
                          {"token": CARD, "payment_option": "card", "connector": "test"}, (200, 201)):
            continue
        start = now + datetime.timedelta(seconds=60 + spread_s * n / max(1, count))
        body = {"schedule_id": str(uuid.uuid4()), "user_id": load.user(i), "from_acct": CARD,
                "to_acct": f"wallet:{load.user(i)}", "amount": "3.00", "currency": "USD",
                "payment_option": "card", "recurrence": "hourly", "time_zone": "UTC",
                "start": start.replace(microsecond=0).isoformat()}
        made += await post(session, base, load, SCHEDULES, i, body, (201,))
    return made


# -- sampling ---------------------------------------------------------------------------------

class Sampler:
    """Every process's RSS, fds and Postgres connections, Redis's memory, payments processed."""

    FIELDS = ["t_s", "processed", "accepted", "role", "pid", "rss_bytes", "fds", "db_conns",
              "redis_used_memory_bytes", "redis_db_keys", "redis_db_bytes"]

    def __init__(self, stack: Stack, db: asyncpg.Connection, rds: redis.Redis, pg_port: int, out: Path):
        self.stack, self.db, self.rds, self.pg_port = stack, db, rds, pg_port
        self.file = open(out, "w", newline="")
        self.writer = csv.DictWriter(self.file, self.FIELDS)
        self.writer.writeheader()
        self.t0 = time.monotonic()
        self.rows: list[dict] = []
        self.last: dict[str, dict] = {}

    async def processed(self) -> int:
        return await self.db.fetchval("SELECT count(*) FROM payment_request WHERE status <> 'processing'")

    def redis_db(self) -> tuple[int, int]:
        keys = list(self.rds.scan_iter(count=1000))
        pipe = self.rds.pipeline(transaction=False)
        for key in keys:
            pipe.memory_usage(key)
        return len(keys), sum(size or 0 for size in pipe.execute())

    async def sample(self, accepted: int) -> int:
        processed = await self.processed()
        used = int(self.rds.info("memory")["used_memory"])
        keys, size = self.redis_db()
        t = round(time.monotonic() - self.t0, 1)
        for role, proc in self.stack.roles().items():
            try:
                with proc.oneshot():
                    rss = proc.memory_info().rss
                    fds = proc.num_fds()
                    conns = sum(1 for c in proc.net_connections("tcp")
                                if c.raddr and c.raddr.port == self.pg_port)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            row = {"t_s": t, "processed": processed, "accepted": accepted, "role": role, "pid": proc.pid,
                   "rss_bytes": rss, "fds": fds, "db_conns": conns, "redis_used_memory_bytes": used,
                   "redis_db_keys": keys, "redis_db_bytes": size}
            self.writer.writerow(row)
            self.rows.append(row)
            self.last[role] = row
        self.file.flush()
        return processed

    def close(self) -> None:
        self.file.close()


async def table_sizes(db: asyncpg.Connection) -> dict[str, tuple[int, int]]:
    """(bytes incl. indexes and TOAST, live rows) of every table in the schema."""
    rows = await db.fetch(
        """SELECT c.relname, pg_total_relation_size(c.oid) AS bytes, coalesce(s.n_live_tup, 0) AS live
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
            WHERE c.relkind IN ('r', 'p') AND n.nspname = 'public'""")
    return {r["relname"]: (r["bytes"], r["live"]) for r in rows}


async def exact_rows(db: asyncpg.Connection, tables) -> dict[str, int]:
    out = {}
    for t in tables:
        out[t] = await db.fetchval(f'SELECT count(*) FROM "{t}"')  # names from pg_class, not input
    return out


def redis_leftovers(rds: redis.Redis) -> dict[str, tuple[int, int, int]]:
    """Keys of the bench's Redis db by shape: (count, bytes, how many have no TTL)."""
    shapes: dict[str, list[int]] = {}
    for key in rds.scan_iter(count=1000):
        shape = UUID_OR_NUMBER.sub("*", key.decode(errors="replace"))
        entry = shapes.setdefault(shape, [0, 0, 0])
        entry[0] += 1
        entry[1] += rds.memory_usage(key) or 0
        entry[2] += rds.ttl(key) == -1
    return {k: tuple(v) for k, v in sorted(shapes.items())}


# -- the run ----------------------------------------------------------------------------------

async def run(args, settings, stack: Stack) -> dict:
    base = f"http://127.0.0.1:{HTTP_PORT}"
    db = await asyncpg.connect(settings.admin_database_url)
    rds = redis.Redis.from_url(settings.redis_url)
    pg_port = urlsplit(settings.admin_database_url).port or 5432
    sampler = Sampler(stack, db, rds, pg_port, args.csv)
    load = Load(settings, args.users, args.payments, args.wait_every)
    fig: dict = {"sizes": {}}
    connector = aiohttp.TCPConnector(limit=args.clients)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        made = await make_schedules(session, base, load, args.schedules, args.schedule_spread_s)
        fig["schedules"] = made
        fig["sizes"]["start"] = (await sampler.processed(), await table_sizes(db))
        clients = [asyncio.create_task(client(session, base, load)) for _ in range(args.clients)]
        t_start = time.monotonic()
        last_progress = 0.0
        half = args.payments // 2
        while not all(c.done() for c in clients):
            stack.check_alive()
            processed = await sampler.sample(load.accepted)
            if "half" not in fig["sizes"] and processed >= half:
                fig["sizes"]["half"] = (processed, await table_sizes(db))
            now = time.monotonic()
            if now - last_progress >= args.progress_s:
                last_progress = now
                rss = " ".join(f"{r}={row['rss_bytes'] / 2**20:.0f}M" for r, row in sampler.last.items())
                rate = processed / (now - t_start) if now > t_start else 0
                print(f"[{datetime.datetime.now():%H:%M:%S}] {processed:>7} processed ({rate:5.1f}/s), "
                      f"{load.accepted:>7} accepted, {load.shed} shed, {sum(load.errors.values())} errors | "
                      f"RSS {rss} | redis db {sampler.last.get('web', {}).get('redis_db_keys', '?')} keys",
                      flush=True)
            await asyncio.sleep(args.sample_s)
        for c in clients:
            c.result()
    # Drain: until nothing but payments parked for review is processing (and the schedules' too).
    t0 = time.monotonic()
    while time.monotonic() - t0 < args.drain_timeout:
        left = await db.fetchval("SELECT count(*) FROM payment_request WHERE status = 'processing'")
        processed = await sampler.sample(load.accepted)
        if not left:
            break
        await asyncio.sleep(args.sample_s)
    fig["left_processing"] = left
    await asyncio.sleep(args.sample_s)
    processed = await sampler.sample(load.accepted)
    fig["sizes"]["end"] = (processed, await table_sizes(db))
    fig.setdefault("sizes", {}).setdefault("half", fig["sizes"]["start"])
    fig["exact"] = await exact_rows(db, fig["sizes"]["end"][1])
    fig["statuses"] = {r["status"] + (f" ({r['failure_code']})" if r["failure_code"] else ""): r["n"]
                       for r in await db.fetch("SELECT status, failure_code, count(*) AS n FROM payment_request "
                                               "GROUP BY status, failure_code ORDER BY count(*) DESC")}
    fig["redis"] = redis_leftovers(rds)
    fig["redis_db_bytes"] = sum(v[1] for v in fig["redis"].values())
    fig["load"] = load
    fig["duration_s"] = time.monotonic() - t_start
    sampler.close()
    fig["rows"] = sampler.rows
    await db.close()
    return fig


# -- report -----------------------------------------------------------------------------------

def nearest(rows: list[dict], processed: int) -> dict | None:
    return min(rows, key=lambda r: abs(r["processed"] - processed)) if rows else None


def rss_table(fig: dict, warmup: int, mark: int) -> tuple[list[str], bool]:
    by_role: dict[str, list[dict]] = {}
    for row in fig["rows"]:
        by_role.setdefault(row["role"], []).append(row)
    out = ["| process | RSS at start (MiB) | RSS at {:,} processed (MiB) | RSS at the end (MiB) | growth {:,} -> end "
           "| steady RSS (median after {:,}, MiB) | fds (max) | Postgres connections (max) |".format(mark, mark, warmup),
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    flat = True
    for role, rows in by_role.items():
        at_mark, end = nearest(rows, mark), rows[-1]
        steady = [r["rss_bytes"] for r in rows if r["processed"] >= warmup] or [end["rss_bytes"]]
        growth = (end["rss_bytes"] - at_mark["rss_bytes"]) / at_mark["rss_bytes"]
        if role != "psp-sim":
            flat &= growth < 0.05
        out.append(f"| {role} | {rows[0]['rss_bytes'] / 2**20:.1f} | {at_mark['rss_bytes'] / 2**20:.1f} | "
                   f"{end['rss_bytes'] / 2**20:.1f} | {growth:+.1%} | {statistics.median(steady) / 2**20:.1f} | "
                   f"{max(r['fds'] for r in rows)} | {max(r['db_conns'] for r in rows)} |")
    return out, flat


def sizes_table(fig: dict) -> list[str]:
    (p0, half), (p1, end) = fig["sizes"]["half"], fig["sizes"]["end"]
    n = max(1, p1 - p0)
    out = [f"Between {p0:,} and {p1:,} payments processed ({n:,} payments):", "",
           "| table | bytes at the end | rows at the end | bytes per payment | rows per payment |",
           "| --- | ---: | ---: | ---: | ---: |"]
    total = 0
    for name in sorted(end, key=lambda t: end[t][0] - half.get(t, (0, 0))[0], reverse=True):
        grew = end[name][0] - half.get(name, (0, 0))[0]
        rows_grew = end[name][1] - half.get(name, (0, 0))[1]
        total += grew
        if grew <= 0 and rows_grew <= 0:
            continue
        out.append(f"| {name} | {end[name][0]:,} | {fig['exact'].get(name, end[name][1]):,} | {grew / n:,.0f} | "
                   f"{rows_grew / n:.2f} |")
    out.append(f"| **all tables** | {sum(v[0] for v in end.values()):,} | | **{total / n:,.0f}** | |")
    out.append("")
    out.append("(rows per payment from pg_stat_user_tables' live-tuple estimates; bytes include indexes and TOAST)")
    return out


def plot(fig: dict, png: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    by_role: dict[str, list[dict]] = {}
    for row in fig["rows"]:
        by_role.setdefault(row["role"], []).append(row)
    f, ax = plt.subplots(figsize=(10, 5.5), dpi=100)
    for role, rows in by_role.items():
        ax.plot([r["processed"] for r in rows], [r["rss_bytes"] / 2**20 for r in rows], label=role, linewidth=1.2)
    ax.set_xlabel("payments processed")
    ax.set_ylabel("RSS (MiB)")
    ax.set_title(title)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    f.tight_layout()
    f.savefig(png)
    plt.close(f)


def report(args, fig: dict, ledger: str, command: str) -> tuple[str, bool]:
    load: Load = fig["load"]
    processed = fig["sizes"]["end"][0]
    mark = min(args.mark, processed)
    table, flat = rss_table(fig, args.warmup, mark)
    when = datetime.datetime.now(datetime.timezone.utc)
    out = [f"`{command}` ({when:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores shared with other engineers, "
           f"Python {platform.python_version()}, load average at the end {os.getloadavg()[0]:.1f})", "",
           f"{processed:,} payments processed ({load.accepted:,} accepted from {args.users:,} users by "
           f"{args.clients} clients, {fig['schedules']} hourly schedules made) in {fig['duration_s'] / 60:.1f} min "
           f"({processed / fig['duration_s']:.0f}/s); statuses {fig['statuses']}; shed (503, retried) {load.shed}; "
           f"errors {load.errors or 0}; still processing after the drain: {fig['left_processing']}.", ""]
    out += [f"![RSS against payments processed]({args.png.name})", ""]
    out += table
    out += ["", f"RSS flat (< 5 % growth from {mark:,} to the end) for every paycell process: "
                f"**{'yes' if flat else 'NO'}** (psp-sim, the providers' stand-in, keeps every charge it "
                "was sent, as a provider does, and is reported but not judged).", ""]
    last = fig["rows"][-1]
    out.append(f"Redis: `used_memory` of the whole server at the end {last['redis_used_memory_bytes'] / 2**20:.1f} MiB "
               f"(shared with other users of that Redis); the soak's db {REDIS_DB} after the drain: "
               f"{sum(v[0] for v in fig['redis'].values())} keys, {fig['redis_db_bytes']:,} bytes:")
    out.append("")
    out.append("| key (uuids and numbers as `*`) | keys | bytes | without TTL |")
    out.append("| --- | ---: | ---: | ---: |")
    for shape, (count, size, no_ttl) in fig["redis"].items():
        out.append(f"| `{shape}` | {count} | {size:,} | {no_ttl} |")
    out.append("")
    out += sizes_table(fig)
    out += ["", "```", ledger.strip(), "```"]
    for sample in load.error_samples:
        out.append(f"- error sample: `{sample}`")
    return "\n".join(out), flat


def write_readme(text: str) -> None:
    readme = HERE / "README.md"
    body = readme.read_text()
    block = f"{README_BEGIN}\n{text}\n{README_END}"
    if README_BEGIN in body:
        head, _, rest = body.partition(README_BEGIN)
        _, _, tail = rest.partition(README_END)
        body = head + block + tail
    else:
        body = body.rstrip("\n") + "\n\n## Soak (`bench/soak.py`)\n\n" + block + "\n"
    readme.write_text(body)


def main(argv=None) -> int:
    args = parse_args(argv)
    command = "nice -n 10 .venv/bin/python bench/soak.py " + " ".join(argv if argv is not None else sys.argv[1:])
    os.environ.update(soak_environ(args.log_level))
    settings = load()
    print(f"paycell soak: database {SOAK_DB}, Redis {settings.redis_url}, web :{HTTP_PORT}, psp-sim :{SIM_PORT}, "
          f"{args.payments:,} payments over {args.users:,} users, {args.clients} clients; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    logdir = Path(tempfile.mkdtemp(prefix="paycell-soak-"))
    signal.signal(signal.SIGTERM, e2e._interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    e2e.reset_stores(settings, SOAK_DB)
    stack = Stack(logdir, args.processes, args.threads)
    fig = None
    try:
        stack.start()
        stack.wait_ready({"psp-sim": f"{settings.psp_sim_url}/v1/stats", "web": f"http://127.0.0.1:{HTTP_PORT}/health"})
        fig = asyncio.run(run(args, settings, stack))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        stack.stop()
        print(f"child logs: {logdir}", flush=True)
    check = subprocess.run([str(e2e.VENV_BIN / "paycell"), "ledger", "check"], capture_output=True, text=True)
    text, flat = report(args, fig, check.stdout + check.stderr, command)
    plot(fig, args.png, f"paycell soak: RSS per process, {args.users:,} users ({datetime.date.today()})")
    print()
    print(text)
    if not args.no_readme:
        write_readme(text)
    if not args.keep_logs and check.returncode == 0:
        shutil.rmtree(logdir, ignore_errors=True)
    return check.returncode or (0 if flat else 2)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--payments", type=int, default=300_000, help="payments to send (default 300,000)")
    parser.add_argument("--users", type=int, default=100_000, help="distinct users (default 100,000)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent closed-loop clients (default 32)")
    parser.add_argument("--schedules", type=int, default=200, help="hourly scheduled pay-ins (default 200)")
    parser.add_argument("--schedule-spread-s", type=float, default=1200.0,
                        help="first occurrences spread over this many seconds from the start (default 1200)")
    parser.add_argument("--wait-every", type=int, default=50, help="one POST in this many asks Prefer: wait=5")
    parser.add_argument("--processes", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--threads", type=int, default=8, help="worker threads per process (default 8)")
    parser.add_argument("--sample-s", type=float, default=5.0, help="seconds between samples (default 5)")
    parser.add_argument("--progress-s", type=float, default=30.0, help="seconds between progress lines (default 30)")
    parser.add_argument("--warmup", type=int, default=100_000, help="payments before RSS counts as steady")
    parser.add_argument("--mark", type=int, default=100_000, help="growth is measured from here to the end")
    parser.add_argument("--drain-timeout", type=float, default=300.0, help="seconds to wait for the last payments")
    parser.add_argument("--log-level", default="warning", help="PAYCELL_LOG_LEVEL of the children (default warning)")
    parser.add_argument("--csv", type=Path, default=HERE / "soak.csv", help="the samples (default bench/soak.csv)")
    parser.add_argument("--png", type=Path, default=HERE / "soak.png", help="the plot (default bench/soak.png)")
    parser.add_argument("--no-readme", action="store_true", help="do not write the result into bench/README.md")
    parser.add_argument("--keep-logs", action="store_true", help="keep the children's log directory")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
