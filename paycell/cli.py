"""The `paycell` command."""
from __future__ import annotations

import asyncio
import os
import sys

import click

from paycell import logs
from paycell.config import SettingsError, load


def _settings():
    try:
        return load()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def _started(settings) -> None:
    """Production's database checks before a long-running process starts (paycell.production)."""
    from paycell.production import preflight

    try:
        asyncio.run(preflight(settings))
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def main() -> None:
    """paycell: wallets, a double-entry ledger, pay-in and pay-out through pluggable PSPs."""


@main.command()
def migrate() -> None:
    """Apply pending schema migrations (as the schema owner)."""
    from paycell.store.migrate import migrate as run

    settings = _settings()
    logs.configure(settings.log_level)
    applied = asyncio.run(run(settings))
    click.echo(f"migrations applied: {applied}" if applied else "schema up to date")


@main.group()
def ledger() -> None:
    """Ledger tools."""


@ledger.command("check")
def ledger_check() -> None:
    """Verify every ledger invariant; exits 1 when any is broken."""
    from paycell.store.db import connect
    from paycell.store.ledger_check import check

    async def run():
        conn = await connect(_settings().app_database_url)
        try:
            return await check(conn)
        finally:
            await conn.close()

    report = asyncio.run(run())
    click.echo(f"ledger check: {report.transactions} transactions, {report.entries} entries, "
               f"{report.accounts} accounts: {'OK' if report.ok else 'BROKEN'}")
    for problem in report.problems:
        click.echo(f"  - {problem}")
    sys.exit(0 if report.ok else 1)


@main.command()
def demo() -> None:
    """Through the running API: a pay-in, a transfer and pay-outs for two users; then wallets and ledger check."""
    from paycell.demo import pipeline_demo

    settings = _settings()
    logs.configure("warning")
    sys.exit(asyncio.run(pipeline_demo(settings)))


@main.command()
@click.argument("user_id")
@click.option("--ttl-s", type=click.IntRange(min=1), default=None,
              help="Lifetime in seconds (default PAYCELL_JWT_TTL_S).")
@click.option("--operator", is_flag=True, help="Carry the operator role (the risk and review API).")
def token(user_id: str, ttl_s: int | None, operator: bool) -> None:
    """Print a bearer token for USER_ID (development: anyone holding the secret can mint one)."""
    from paycell.http.auth import OPERATOR, issue_token

    try:
        click.echo(issue_token(_settings(), user_id, ttl_s, roles=(OPERATOR,) if operator else ()))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
def web() -> None:
    """Serve the HTTP API on PAYCELL_HTTP_HOST:PAYCELL_HTTP_PORT."""
    from paycell.http.app import main as serve

    settings = _settings()
    logs.configure(settings.log_level)
    _started(settings)
    try:
        serve(settings)
    except SettingsError as exc:  # no way to verify a token: refuse to serve
        raise click.ClickException(str(exc)) from None


def _exec(*argv: str) -> None:
    """Replace this process with a tool installed beside this Python (dramatiq, periodiq, honcho)."""
    tool = os.path.join(os.path.dirname(sys.executable), argv[0])
    os.execv(tool, [tool, *argv[1:]])


@main.command()
@click.option("--processes", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--threads", type=click.IntRange(1, 256), default=8, show_default=True)
def worker(processes: int, threads: int) -> None:
    """Run the Dramatiq workers that carry payments through their steps."""
    _started(_settings())
    _exec("dramatiq", "paycell.actors.worker", "--processes", str(processes), "--threads", str(threads))


@main.command()
def scheduler() -> None:
    """Run the clock of the periodic actors (the re-drive sweeper, idempotency-key expiry). Run exactly one."""
    _started(_settings())
    _exec("periodiq", "paycell.actors.worker")


@main.command("psp-sim")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="default: PAYCELL_PSP_SIM_PORT")
def psp_sim(port: int | None) -> None:
    """Run the PSP simulator (dev, demo and tests only; refused when PAYCELL_ENV=production)."""
    from paycell.psp.simulator import main as run

    settings = _settings()
    if settings.env == "production":
        raise click.ClickException("the PSP simulator is refused when PAYCELL_ENV=production: it moves no money. "
                                   "Run it only in development (unset PAYCELL_ENV)")
    logs.configure(settings.log_level)
    run(port or settings.psp_sim_port)


@main.command()
def sweep() -> None:
    """Re-drive live orders whose lease ran out, once (the scheduler does this every minute)."""
    from paycell.actors.broker import build_broker
    from paycell.store.db import create_pool
    from paycell.sweeper import sweep_once

    settings = _settings()
    logs.configure(settings.log_level)

    async def run():
        pool = await create_pool(settings, size_max=2)
        try:
            return await sweep_once(pool, build_broker(settings), settings)
        finally:
            await pool.close()

    result = asyncio.run(run())
    click.echo(f"re-driven: {result.redriven or 'none'}; past deadline: {result.overdue}; "
               f"provider events sent again: {result.events}")


@main.command()
def queues() -> None:
    """Each queue's depth, delayed and dead-lettered counts, read from Redis."""
    import redis

    from paycell import queues as q

    client = redis.Redis.from_url(_settings().redis_url)
    click.echo(f"{'queue':<16}{'ready':>8}{'delayed':>9}{'dead':>7}")
    for row in q.stats(client):
        click.echo(f"{row.queue:<16}{row.ready:>8}{row.delayed:>9}{row.dead:>7}")


@main.group()
def dlq() -> None:
    """Dead letters: messages whose retries ran out (their orders need attention)."""


def _dlq_resources(settings):
    import redis

    from paycell.actors.broker import build_broker
    from paycell.store.db import create_pool

    return redis.Redis.from_url(settings.redis_url), build_broker(settings), create_pool(settings, size_max=2)


@dlq.command("list")
def dlq_list() -> None:
    """Dead letters with their order, actor, error and age (Postgres and Redis)."""
    from paycell import dlq as dead

    settings = _settings()

    async def run():
        client, _, pool_coro = _dlq_resources(settings)
        pool = await pool_coro
        try:
            return await dead.list_all(pool, client)
        finally:
            await pool.close()

    rows = asyncio.run(run())
    if not rows:
        click.echo("no dead letters")
    for d in rows:
        click.echo(f"{d.id:<12} {d.actor:<20} order {d.order_id or '-':<36} age {d.age_s:>6}s "
                   f"{'redis+pg' if d.in_redis and not d.id.startswith('redis:') else ('redis' if d.in_redis else 'pg')}"
                   f"  {d.error}")


@dlq.command("replay")
@click.argument("ident", required=False)
@click.option("--all", "replay_all", is_flag=True, help="replay every dead letter")
def dlq_replay(ident: str | None, replay_all: bool) -> None:
    """Re-enqueue dead letter IDENT (or --all): its order is reopened where it was left."""
    from paycell import dlq as dead

    if bool(ident) == replay_all:
        raise click.UsageError("give one dead letter id or --all")
    settings = _settings()

    async def run():
        client, broker, pool_coro = _dlq_resources(settings)
        pool = await pool_coro
        try:
            ids = [d.id for d in await dead.list_all(pool, client)] if replay_all else [ident]
            return [(i, await dead.replay(pool, client, broker, settings, i)) for i in ids]
        finally:
            await pool.close()

    results = asyncio.run(run())
    for i, ok in results:
        click.echo(f"{i}: {'replayed' if ok else 'not found (or already replayed)'}")
    if not replay_all and not results[0][1]:
        sys.exit(1)


@main.group()
def idempotency() -> None:
    """API idempotency keys."""


@idempotency.command("expire")
def idempotency_expire() -> None:
    """Delete idempotency keys older than PAYCELL_IDEMPOTENCY_KEY_RETENTION_S, in batches (the
    scheduler does this every hour); one progress line per batch."""
    from paycell.retention import expire_idempotency_keys
    from paycell.store.db import create_pool

    settings = _settings()
    logs.configure("warning")

    async def run():
        pool = await create_pool(settings, size_max=1)
        try:
            return await expire_idempotency_keys(pool, settings, progress=click.echo)
        finally:
            await pool.close()

    result = asyncio.run(run())
    click.echo(f"expired {result.deleted} idempotency keys in {result.batches} batches"
               + ("" if result.done else "; more remain (the batch bound was reached), run again"))


@main.group()
def instrument() -> None:
    """Payment instruments (tokens a PSP issued)."""


@instrument.command("unblock")
@click.argument("token")
def instrument_unblock(token: str) -> None:
    """Forget TOKEN's recent declines, so that payments may name it again."""
    from paycell.velocity import Velocity

    settings = _settings()

    async def run():
        limits = Velocity(settings)
        try:
            before = await limits.declines(token)
            await limits.clear_declines(token)
            return before
        finally:
            await limits.close()

    click.echo(f"{token}: {asyncio.run(run())} recent declines cleared")


@main.group()
def webhooks() -> None:
    """Provider events in the webhook inbox."""


@webhooks.command("unapplied")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
def webhooks_unapplied(limit: int) -> None:
    """Events not applied yet, oldest first: why (unmatched: no order carries them yet; mismatch:
    the order they name is another connector's), how often tried, and what they name."""
    from paycell.store import inbox
    from paycell.store.db import connect

    settings = _settings()

    async def run():
        conn = await connect(settings.app_database_url)
        try:
            return await inbox.unapplied(conn, limit=limit)
        finally:
            await conn.close()

    rows = asyncio.run(run())
    for r in rows:
        click.echo(f"{r['connector']} {r['event_id']} {r['kind']}/{r['type']} "
                   f"received {r['received_at']:%Y-%m-%d %H:%M:%S} attempts {r['apply_attempts']} "
                   f"{r['result'] or 'queued'}: order {r['payment_order_id'] or '-'} "
                   f"reference {r['psp_reference'] or '-'}" + (f" ({r['note']})" if r["note"] else ""))
    click.echo(f"{len(rows)} unapplied event(s)")


@webhooks.command("resend")
@click.argument("connector")
@click.argument("event_id")
def webhooks_resend(connector: str, event_id: str) -> None:
    """Send one stored, unapplied event to the apply actor again (after fixing what kept it)."""
    from paycell.actors.broker import build_broker, send

    settings = _settings()
    send(build_broker(settings), "apply_event", connector, event_id)
    click.echo(f"sent {connector}/{event_id} to apply_event")


@main.group()
def risk() -> None:
    """The fraud model: train it, list its versions."""


def _print_metrics(metrics: dict) -> None:
    click.echo(f"  held-out: {metrics['rows']} payments, {metrics['frauds']} frauds; "
               f"ROC AUC {metrics['roc_auc']:.4f}, average precision {metrics['average_precision']:.4f}")
    for at in metrics["at_thresholds"]:
        precision = "-" if at["precision"] is None else f"{at['precision']:.3f}"
        click.echo(f"  score >= {at['threshold']}: {at['flagged']} flagged, precision {precision}, "
                   f"recall {at['recall']:.3f}")


@risk.command("train")
@click.option("--synthetic", is_flag=True, help="train on generated payments (paycell.risk.synthetic), not history")
@click.option("--users", type=click.IntRange(1, 1_000_000), default=None, help="with --synthetic: users [2000]")
@click.option("--days", type=click.IntRange(1, 3_660), default=None, help="with --synthetic: days of payments [30]")
@click.option("--seed", type=int, default=None, help="with --synthetic: the generator's seed [7]")
@click.option("--trained-by", default="cli", show_default=True, help="who trained it (an operator id)")
def risk_train(synthetic: bool, users: int | None, days: int | None, seed: int | None, trained_by: str) -> None:
    """Train a model, store it, promote it if it is no worse than the promoted one.

    Without --synthetic it learns from the last PAYCELL_RISK_TRAIN_WINDOW_DAYS of payments (frauds:
    returned payments and review declines); it stops, storing nothing and exiting 1, when they
    hold fewer than PAYCELL_RISK_TRAIN_FRAUDS_MIN frauds."""
    from paycell.risk import retrain, train
    from paycell.store.db import create_pool
    from paycell.store.risk_models import TRAINED_BY

    if not synthetic and (users, days, seed) != (None, None, None):
        raise click.UsageError("--users, --days and --seed describe synthetic payments: add --synthetic")
    users, days, seed = users or 2_000, days or 30, 7 if seed is None else seed
    if not TRAINED_BY.fullmatch(trained_by):
        raise click.BadParameter("letters, digits and _.:@- (at most 128, starting with a letter or digit)",
                                 param_hint="--trained-by")
    settings = _settings()
    logs.configure(settings.log_level)

    async def run():
        pool = await create_pool(settings, size_max=2)
        try:
            if synthetic:
                return await retrain.train_synthetic(pool, settings, users=users, days=days, seed=seed,
                                                     trained_by=trained_by)
            return await retrain.train_history(pool, settings, trained_by=trained_by)
        finally:
            await pool.close()

    try:
        decision, candidate = asyncio.run(run())
    except train.NotEnoughLabels as exc:
        raise click.ClickException(f"training stopped, nothing stored: {exc}") from None
    import msgspec

    counts = candidate.counts
    click.echo(f"model v{decision.version} ({candidate.source} {candidate.source_detail}): trained on "
               f"{counts['train_rows']} payments ({counts['train_frauds']} frauds) in {candidate.fit_s:.1f} s")
    _print_metrics(msgspec.to_builtins(candidate.metrics))
    click.echo(f"{decision.status}: {decision.note}")


@risk.command("models")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1_000))
def risk_models_list(limit: int) -> None:
    """The model versions, newest first: status, source, window and held-out metrics."""
    from paycell.store import risk_models
    from paycell.store.db import connect

    settings = _settings()

    async def run():
        conn = await connect(settings.app_database_url)
        try:
            return await risk_models.list_models(conn, limit=limit)
        finally:
            await conn.close()

    rows = asyncio.run(run())
    if not rows:
        click.echo("no model trained yet: paycell risk train [--synthetic]")
    def number(metrics: dict, name: str) -> str:
        value = metrics.get(name)
        return "-" if value is None else f"{value:.4f}"

    for r in rows:
        m = r["metrics"]
        click.echo(f"v{r['version']:<5} {r['status']:<9} {r['created_at']:%Y-%m-%d %H:%M} by {r['trained_by']:<12} "
                   f"{r['source']:<9} window {r['window_from']:%Y-%m-%d}..{r['window_to']:%Y-%m-%d} "
                   f"ROC AUC {number(m, 'roc_auc')} AP {number(m, 'average_precision')} "
                   f"({m.get('frauds', '-')} frauds held out) {r['model_bytes'] // 1024} KiB"
                   + (f"\n       {r['note']}" if r["note"] else ""))


@main.command()
@click.option("--exit-after-demo", is_flag=True, help="stop everything once the demo has run")
def dev(exit_after_demo: bool) -> None:
    """Run every process of Procfile.dev (honcho), then the demo against them (development only)."""
    import signal
    import subprocess
    import time
    import urllib.request

    from paycell.demo import pipeline_demo
    from paycell.psp import sims

    settings = _settings()
    if settings.env == "production":
        raise click.ClickException("`paycell dev` runs the PSP simulator and the demo, which PAYCELL_ENV=production "
                                   "refuses: run the processes of the Procfile instead")
    honcho = os.path.join(os.path.dirname(sys.executable), "honcho")
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    env = {**os.environ, "PATH": path}
    # The simulator this command starts listens on PAYCELL_PSP_SIM_PORT: unless told otherwise, the
    # workers must call it there (moving only the port used to leave them calling the default one).
    env.setdefault("PAYCELL_PSP_SIM_URL", f"http://127.0.0.1:{settings.psp_sim_port}")
    # Every connector points at its provider's simulator, with secrets made for this run; their
    # webhooks come back to this API.
    for key, value in sims.connector_env(env["PAYCELL_PSP_SIM_URL"]).items():
        env.setdefault(key, value)
    env.setdefault("PAYCELL_PSP_SIM_WEBHOOK_BASE_URL", f"http://{settings.http_host}:{settings.http_port}")
    env.setdefault("PAYCELL_PSP_ROUTES", sims.DEV_ROUTES)
    procs = subprocess.Popen([honcho, "-f", "Procfile.dev", "start", "web", "worker", "scheduler", "psp-sim"],
                             start_new_session=True, env=env)
    code = 1
    try:
        deadline = time.monotonic() + 60
        click.echo("waiting for the API ...")
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://{settings.http_host}:{settings.http_port}/health", timeout=1):
                    break
            except OSError:
                if procs.poll() is not None:
                    raise click.ClickException("the processes exited before the API answered") from None
                time.sleep(0.3)
        else:
            raise click.ClickException("the API did not answer within 60 s")
        logs.configure("warning")
        code = asyncio.run(pipeline_demo(settings))
        if not exit_after_demo:
            click.echo(f"paycell is running: API on http://{settings.http_host}:{settings.http_port} "
                       "(Ctrl-C stops everything)")
            code = procs.wait()
    except KeyboardInterrupt:
        code = 0
    finally:
        if procs.poll() is None:
            os.killpg(procs.pid, signal.SIGTERM)
            try:
                procs.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(procs.pid, signal.SIGKILL)
    sys.exit(code)
