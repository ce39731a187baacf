"""The `paycell` command."""
from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import click

from paycell import logs
from paycell.config import SettingsError, load
from paycell.memory import trim


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
    logs.configure(settings.log_level, settings.log_format)
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
    """Serve the API on PAYCELL_HTTP_HOST:PAYCELL_HTTP_PORT: HTTPS with PAYCELL_TLS_CERT_FILE/_KEY_FILE, else HTTP."""
    from paycell.http.app import main as serve
    from paycell.production import refuse_plain_http

    settings = _settings()
    logs.configure(settings.log_level, settings.log_format)
    try:
        refuse_plain_http(settings)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    _started(settings)
    trim.start_trimmer(settings.malloc_trim_interval_s)
    try:
        serve(settings)
    except SettingsError as exc:  # no way to verify a token, or an unusable certificate: refuse to serve
        raise click.ClickException(str(exc)) from None


def _exec(*argv: str) -> None:
    """Replace this process with a tool installed beside this Python (dramatiq, honcho)."""
    tool = os.path.join(os.path.dirname(sys.executable), argv[0])
    os.execv(tool, [tool, *argv[1:]])


@main.command()
@click.option("--processes", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--threads", type=click.IntRange(1, 256), default=8, show_default=True)
def worker(processes: int, threads: int) -> None:
    """Run the Dramatiq workers that carry payments through their steps."""
    from dramatiq.cli import main as dramatiq_main
    from dramatiq.cli import make_argument_parser

    from paycell.metrics import worker as worker_metrics

    settings = _settings()
    worker_metrics.prepare(settings)  # before anything imports prometheus_client
    # Dramatiq's own command line, in this process: its lines go through paycell's logging (one
    # stream: --skip-logging keeps Dramatiq from installing its plain-text format; the worker
    # processes it forks inherit this set-up). SIGHUP re-executes this same command.
    logs.configure(settings.log_level, settings.log_format)
    _started(settings)
    args = make_argument_parser().parse_args([
        "paycell.actors.worker", "--processes", str(processes), "--threads", str(threads),
        "--worker-shutdown-timeout", str(settings.worker_shutdown_timeout_ms), "--skip-logging"])
    sys.exit(dramatiq_main(args))


@main.command()
def scheduler() -> None:
    """Run the clock: scheduled payments and the periodic actors (sweeper, expiries, training). Run as many as you like."""
    from paycell.schedules.process import main as run

    settings = _settings()
    logs.configure(settings.log_level, settings.log_format)
    _started(settings)
    trim.start_trimmer(settings.malloc_trim_interval_s)
    run(settings)


@main.command("psp-sim")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="default: PAYCELL_PSP_SIM_PORT")
def psp_sim(port: int | None) -> None:
    """Run the PSP simulator (dev, demo and tests only; refused when PAYCELL_ENV=production)."""
    from paycell.psp.simulator import main as run

    settings = _settings()
    if settings.env == "production":
        raise click.ClickException("the PSP simulator is refused when PAYCELL_ENV=production: it moves no money. "
                                   "Run it only in development (unset PAYCELL_ENV)")
    logs.configure(settings.log_level, settings.log_format)
    run(port or settings.psp_sim_port)


@main.command()
def sweep() -> None:
    """Re-drive live orders whose lease ran out, once (the scheduler does this every minute)."""
    from paycell.actors.broker import build_broker
    from paycell.store.db import create_pool
    from paycell.sweeper import sweep_once

    settings = _settings()
    logs.configure(settings.log_level, settings.log_format)

    async def run():
        pool = await create_pool(settings, size_max=2)
        try:
            return await sweep_once(pool, build_broker(settings), settings)
        finally:
            await pool.close()

    result = asyncio.run(run())
    click.echo(f"re-driven: {result.redriven or 'none'}; past deadline: {result.overdue}; "
               f"provider events sent again: {result.events}")


@main.command("schedules")
def schedules_tick() -> None:
    """Run the scheduled payments that are due and learn past runs' outcomes, once (the scheduler does
    this every PAYCELL_SCHEDULER_TICK_S; running it beside schedulers is safe)."""
    from paycell.actors.broker import build_broker, send
    from paycell.schedules import clock, outcomes
    from paycell.schedules.process import utc_now
    from paycell.store.db import create_pool

    settings = _settings()
    logs.configure(settings.log_level, settings.log_format)

    async def run():
        pool = await create_pool(settings, size_max=2)
        broker = build_broker(settings)

        async def enqueue(step: str, *ids: str) -> None:
            send(broker, step, *ids)

        try:
            now = utc_now()
            return await clock.run_due(pool, settings, now=now, enqueue=enqueue), \
                await outcomes.learn(pool, settings, now=now)
        finally:
            broker.close()
            await pool.close()

    result, resolved = asyncio.run(run())
    click.echo(f"payments made: {result.created}; occurrences skipped: {result.skipped}; runs refused: "
               f"{result.refused}; schedules ended: {result.ended}, paused: {result.paused}; "
               f"runs resolved: {resolved}")


@main.command()
def queues() -> None:
    """Each queue's depth, delayed and dead-lettered counts, read from the broker (Redis or RabbitMQ)."""
    from paycell.queues import open_queues

    queues_ = open_queues(_settings())
    try:
        rows = queues_.stats()
    finally:
        queues_.close()
    click.echo(f"{'queue':<16}{'ready':>8}{'delayed':>9}{'dead':>7}")
    for row in rows:
        click.echo(f"{row.queue:<16}{row.ready:>8}{row.delayed:>9}{row.dead:>7}")


@main.group()
def dlq() -> None:
    """Dead letters: messages whose retries ran out (their orders need attention)."""


def _dlq_resources(settings):
    from paycell.actors.broker import build_broker
    from paycell.queues import open_queues
    from paycell.store.db import create_pool

    return open_queues(settings), build_broker(settings), create_pool(settings, size_max=2)


@dlq.command("list")
def dlq_list() -> None:
    """Dead letters with their order, actor, error and age (Postgres and the broker)."""
    from paycell import dlq as dead

    settings = _settings()

    async def run():
        queues_, broker, pool_coro = _dlq_resources(settings)
        pool = await pool_coro
        try:
            return await dead.list_all(pool, queues_), queues_.name
        finally:
            await pool.close()
            queues_.close()
            broker.close()

    rows, where = asyncio.run(run())
    if not rows:
        click.echo("no dead letters")
    for d in rows:
        only_broker = d.id.startswith(f"{where}:")
        click.echo(f"{d.id:<12} {d.actor:<20} order {d.order_id or '-':<36} age {d.age_s:>6}s "
                   f"{where if only_broker else (where + '+pg' if d.in_broker else 'pg')}"
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
        queues_, broker, pool_coro = _dlq_resources(settings)
        pool = await pool_coro
        try:
            ids = [d.id for d in await dead.list_all(pool, queues_)] if replay_all else [ident]
            return [(i, await dead.replay(pool, queues_, broker, settings, i)) for i in ids]
        finally:
            await pool.close()
            queues_.close()
            broker.close()

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
    """The risk step: rule sets, named lists and the fraud model (in the database; workers follow
    within PAYCELL_RISK_RELOAD_S)."""


def _who(as_: str | None) -> str:
    """Who a change is recorded as: --as, else cli:<the OS user>."""
    import getpass

    from paycell.rules.changes import WHO_CHARS_MAX

    who = as_ or f"cli:{getpass.getuser()}"
    if not 0 < len(who) <= WHO_CHARS_MAX:
        raise click.BadParameter(f"at most {WHO_CHARS_MAX} characters", param_hint="--as")
    return who


_AS = click.option("--as", "as_", metavar="WHO", help="record the change as WHO (default cli:<OS user>)")


def _on_db(work, *, transaction: bool = False):
    """Run `work(conn)` on one app-role connection; typed refusals become a message and exit 1."""
    from paycell.errors import PaycellError, RuleSetInvalid
    from paycell.store.db import connect

    settings = _settings()
    logs.configure("warning")

    async def run():
        conn = await connect(settings.app_database_url)
        try:
            if not transaction:
                return await work(conn)
            async with conn.transaction():
                return await work(conn)
        finally:
            await conn.close()

    try:
        return asyncio.run(run())
    except RuleSetInvalid:
        raise
    except PaycellError as exc:
        raise click.ClickException(f"{exc.message}" + (f" ({exc.field})" if exc.field else "")) from None


def _print_problems(path: str, exc) -> None:
    kind = "does not parse" if exc.code == "rules_syntax" else "is invalid"
    click.echo(f"{path} {kind}: {len(exc.problems)} problem(s); nothing stored", err=True)
    for p in exc.problems:
        click.echo(f"{path}:{p.line}:{p.column}: {p.message}", err=True)


def _read_rules(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from None


@risk.group("rules")
def risk_rules() -> None:
    """Rule sets: every version kept, one in force."""


@risk_rules.command("show")
@click.argument("version", required=False, type=click.IntRange(min=0))
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
def risk_rules_show(version: int | None, limit: int) -> None:
    """The versions, newest first (* in force); with VERSION, that one's source (0: the default file)."""
    from paycell.rules.in_force import rules_file_text
    from paycell.store import risk_rules as store

    async def work(conn):
        if version is None:
            return await store.in_force_version(conn), await store.rule_sets(conn, limit=limit, before=None)
        return await store.rule_set(conn, version), await store.activations(conn, version, limit=10)

    first, rows = _on_db(work)
    if version is None:
        if first is None:
            click.echo("in force: version 0 (the rule file: no stored rule set in force)")
        for r in rows:
            click.echo(f"{'*' if r['in_force'] else ' '} {r['version']:>6}  {r['created_at']:%Y-%m-%d %H:%M:%S}  "
                       f"{r['created_by']:<24} {bytes(r['sha256']).hex()[:12]}  {r['note']}")
        if not rows:
            click.echo("no rule set stored")
        return
    if version == 0:
        click.echo("# version 0: the rule file (PAYCELL_RISK_RULES_FILE, else the shipped default)")
        click.echo(rules_file_text(_settings()), nl=False)
        return
    if first is None:
        raise click.ClickException(f"no rule set version {version}")
    click.echo(f"# version {version}{' (in force)' if first['in_force'] else ''}, stored by {first['created_by']} "
               f"at {first['created_at']:%Y-%m-%d %H:%M:%S %Z}, sha256 {bytes(first['sha256']).hex()}")
    if first["note"]:
        click.echo(f"# note: {first['note']}")
    for a in rows:
        click.echo(f"# activated by {a['activated_by']} at {a['activated_at']:%Y-%m-%d %H:%M:%S %Z}")
    click.echo(first["source"], nl=not first["source"].endswith("\n"))


@risk_rules.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--offline", is_flag=True, help="do not read the lists from the database (list names are not checked)")
def risk_rules_check(file: str, offline: bool) -> None:
    """Compile FILE without storing it: every problem as FILE:LINE:COLUMN; exits 1 if any."""
    from paycell.errors import RuleSetInvalid
    from paycell.rules import changes
    from paycell.rules.check import compile_rules

    source = _read_rules(file)
    try:
        if offline:
            rule_set = compile_rules(source)
        else:
            async def work(conn):
                return await changes.compile_against_lists(conn, source)
            rule_set = _on_db(work)
    except RuleSetInvalid as exc:
        _print_problems(file, exc)
        sys.exit(1)
    click.echo(f"{file}: OK, {len(rule_set.rules)} rules")


@risk_rules.command("push")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--note", default="", help="why (kept with the version)")
@click.option("--no-activate", is_flag=True, help="store it without putting it in force")
@_AS
def risk_rules_push(file: str, note: str, no_activate: bool, as_: str | None) -> None:
    """Compile FILE, store it as a new version and put it in force (unless --no-activate)."""
    from paycell.errors import RuleSetInvalid
    from paycell.rules import changes

    source, who = _read_rules(file), _who(as_)

    async def work(conn):
        return await changes.push(conn, source, note=note, activate=not no_activate, by=who)

    try:
        pushed = _on_db(work, transaction=True)
    except RuleSetInvalid as exc:
        _print_problems(file, exc)
        sys.exit(1)
    stored = "stored" if pushed.created else "already stored"
    state = "put in force" if pushed.activated else ("not activated" if no_activate else "already in force")
    click.echo(f"version {pushed.version}: {stored}, {state}")


@risk_rules.command("activate")
@click.argument("version", type=click.IntRange(min=0))
@_AS
def risk_rules_activate(version: int, as_: str | None) -> None:
    """Put stored VERSION in force (rolling back is activating an older one; 0: the rule file)."""
    from paycell.errors import RuleSetInvalid
    from paycell.rules import changes

    who = _who(as_)

    async def work(conn):
        return await changes.activate(conn, version, by=who)

    try:
        activated = _on_db(work, transaction=True)
    except RuleSetInvalid as exc:
        _print_problems(f"version {version}", exc)
        sys.exit(1)
    click.echo(f"version {version}: {'put in force' if activated else 'already in force'}")


@risk.group("lists")
def risk_lists() -> None:
    """Named lists (users, instruments, IPs, countries) the rules test membership in."""


@risk_lists.command("show")
@click.argument("name", required=False)
@click.option("--all", "show_all", is_flag=True, help="removed entries too")
def risk_lists_show(name: str | None, show_all: bool) -> None:
    """Every list with its count of live entries; with NAME, that list's values, newest first."""
    from paycell.rules import changes
    from paycell.store import risk_rules as store

    async def work(conn):
        if name is None:
            found, after = [], None
            while page := await store.lists(conn, limit=500, after=after):
                found += page
                after = page[-1]["name"]
            return found
        await changes.list_kind(conn, name)
        found, before = [], None
        while page := await store.entries(conn, name, limit=1000, before=before, include_removed=show_all):
            found += page
            before = page[-1]["entry_id"]
        return found

    rows = _on_db(work)
    if name is None:
        for r in rows:
            click.echo(f"{r['name']:<32} {r['kind']:<11} {r['live_entries']:>8} live")
        return
    for r in rows:
        removed = f"  removed by {r['removed_by']} at {r['removed_at']:%Y-%m-%d %H:%M:%S}" if r["removed_at"] else ""
        click.echo(f"{r['value']:<40} added by {r['added_by']} at {r['added_at']:%Y-%m-%d %H:%M:%S}"
                   + (f"  ({r['note']})" if r["note"] else "") + removed)
    click.echo(f"{len(rows)} {'entries' if show_all else 'live entries'}")


@risk_lists.command("create")
@click.argument("name")
@click.argument("kind", type=click.Choice(["user", "instrument", "ip", "country"]))
@_AS
def risk_lists_create(name: str, kind: str, as_: str | None) -> None:
    """Create list NAME holding KIND values."""
    from paycell.rules import changes

    who = _who(as_)

    async def work(conn):
        return await changes.create_list(conn, name, kind, by=who)

    _, created = _on_db(work, transaction=True)
    click.echo(f"{name}: {'created' if created else 'exists already'} ({kind})")


@risk_lists.command("add")
@click.argument("name")
@click.argument("values", nargs=-1, required=True)
@click.option("--note", default="", help="why (kept with each entry)")
@_AS
def risk_lists_add(name: str, values: tuple[str, ...], note: str, as_: str | None) -> None:
    """Add VALUES to list NAME (one already there is left as it is)."""
    from paycell.rules import changes

    who = _who(as_)

    async def work(conn):
        return await changes.add_values(conn, name, list(values), note=note, by=who,
                                        entries_max=_settings().risk_list_entries_max)

    normalised, added = _on_db(work, transaction=True)
    click.echo(f"{name}: {len(added)} added, {len(normalised) - len(added)} already there"
               + (f": {' '.join(added)}" if added else ""))


@risk_lists.command("remove")
@click.argument("name")
@click.argument("value")
@_AS
def risk_lists_remove(name: str, value: str, as_: str | None) -> None:
    """Remove VALUE from list NAME."""
    from paycell.rules import changes

    who = _who(as_)

    async def work(conn):
        return await changes.remove_value(conn, name, value, by=who)

    row = _on_db(work, transaction=True)
    click.echo(f"{name}: {row['value']} removed by {row['removed_by']} at {row['removed_at']:%Y-%m-%d %H:%M:%S}")


@main.group()
def reviews() -> None:
    """The review queue: payments the risk engine parked for a human (paycell.reviews)."""


def _review_call(settings, work):
    """Run `work(conn)` on one connection of the app role; PaycellErrors become a clean exit 1."""
    from paycell.errors import PaycellError
    from paycell.store.db import connect

    async def run():
        conn = await connect(settings.app_database_url)
        try:
            return await work(conn)
        finally:
            await conn.close()

    try:
        return asyncio.run(run())
    except PaycellError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from None


def _review_line(item) -> str:
    who = ""
    if item.resolved_by:
        who = f" {item.state} by {item.resolved_by} at {item.resolved_at:%Y-%m-%d %H:%M:%S}"
    elif item.claimed_by:
        who = f" claimed by {item.claimed_by} at {item.claimed_at:%Y-%m-%d %H:%M:%S}"
    return (f"{item.review_id} {item.state:<8} {item.kind} user {item.user_id} order {item.payment_order_id or '-'} "
            f"opened {item.created_at:%Y-%m-%d %H:%M:%S} expires {item.expires_at:%Y-%m-%d %H:%M:%S}"
            f"{who}: {'; '.join(item.reasons) or '-'}")


@reviews.command("list")
@click.option("--state", default="open", show_default=True,
              type=click.Choice(["open", "claimed", "approved", "declined", "expired"]))
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
def reviews_list(state: str, limit: int) -> None:
    """Items in a state, oldest first."""
    from paycell.store import reviews as store

    items = _review_call(_settings(), lambda conn: store.page(conn, state=state, limit=limit, after=None))
    for item in items:
        click.echo(_review_line(item))
    click.echo(f"{len(items)} {state} review item(s)")


@reviews.command("show")
@click.argument("review_id")
def reviews_show(review_id: str) -> None:
    """An item, its payment and the payment's full event history, as JSON."""
    import msgspec

    from paycell.http.reviews import review_detail

    view = _review_call(_settings(), lambda conn: review_detail(conn, review_id))
    click.echo(msgspec.json.format(msgspec.json.encode(view), indent=2).decode())


@reviews.command("claim")
@click.argument("review_id")
@click.option("--as", "operator", required=True, help="the operator's user id")
def reviews_claim(review_id: str, operator: str) -> None:
    """Claim an item for OPERATOR (again: renews their claim)."""
    from paycell import reviews as queue

    settings = _settings()
    item = _review_call(settings, lambda conn: queue.claim(conn, settings, review_id, by=operator))
    click.echo(_review_line(item))


def _resolve_command(action: str):
    @click.argument("review_id")
    @click.option("--as", "operator", required=True, help="the operator's user id")
    @click.option("--note", default=None, help="why (kept on the item and in the payment's event log)")
    @click.option("--action-taken", default=None,
                  help="a reconciliation item: what was done about the inconsistency (required for those)")
    def command(review_id: str, operator: str, note: str | None, action_taken: str | None) -> None:
        from paycell import reviews as queue
        from paycell.actors.broker import build_broker, send

        settings = _settings()
        try:
            note = queue.check_note(note)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--note") from None
        resolved = _review_call(settings, lambda conn: queue.resolve(conn, settings, review_id, by=operator,
                                                                     action=action, note=note,
                                                                     action_taken=action_taken))
        if resolved.proceed:  # after the commit; a lost send is re-driven by the sweeper
            send(build_broker(settings), "proceed", *resolved.proceed)
        click.echo(_review_line(resolved.item) + f" (payment order now {resolved.order_state or '-'})")
    command.__doc__ = f"{action.capitalize()} an item as OPERATOR: the payment " + (
        "continues." if action == "approve" else "fails and a pay-out's reserve is released.")
    return command


reviews.command("approve")(_resolve_command("approve"))
reviews.command("decline")(_resolve_command("decline"))


@reviews.command("expire")
def reviews_expire() -> None:
    """Apply the expiry policy to items past their expiry, once (the scheduler does this every minute)."""
    from paycell import reviews as queue
    from paycell.actors.broker import build_broker, send
    from paycell.store.db import create_pool

    settings = _settings()

    async def run():
        pool = await create_pool(settings, size_max=2)
        try:
            return await queue.expire_due(pool, settings)
        finally:
            await pool.close()

    result = asyncio.run(run())
    broker = build_broker(settings) if result.proceed else None
    for user_id, order_id in result.proceed:
        send(broker, "proceed", user_id, order_id)
    click.echo(f"expired {result.expired} review item(s) ({settings.review_expiry_action}); "
               f"{len(result.proceed)} payment(s) sent on")


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
    logs.configure(settings.log_level, settings.log_format)

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
    # The demo's schedule runs at its start, not up to PAYCELL_SCHEDULE_JITTER_S later.
    env.setdefault("PAYCELL_SCHEDULE_JITTER_S", "0")
    procs = subprocess.Popen([honcho, "-f", "Procfile.dev", "start", "web", "worker", "scheduler", "psp-sim"],
                             start_new_session=True, env=env)
    code = 1

    def stop(signum, frame):
        # SIGTERM or SIGHUP (a supervisor, a closed terminal): leave through the `finally` below,
        # which stops every child, as Ctrl-C does. Python's default would leave them running.
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
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
                       "(Ctrl-C, SIGTERM or SIGHUP stops everything)")
            code = procs.wait()
    except KeyboardInterrupt:
        code = 0
    finally:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second signal must not cut the clean-up short
        if procs.poll() is None:
            os.killpg(procs.pid, signal.SIGTERM)
            try:
                procs.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(procs.pid, signal.SIGKILL)
    sys.exit(code)


@main.group()
def reconcile() -> None:
    """Reconciliation: internal checks, settlement files, run reports (paycell.reconcile)."""


def _with_context(settings, work):
    """Run `work(ctx)` with a worker's context (pool, broker, connectors); typed errors exit 1."""
    from paycell.actors.broker import build_broker
    from paycell.actors.context import Context
    from paycell.errors import PaycellError
    from paycell.store.db import create_pool

    async def run():
        ctx = Context(settings, await create_pool(settings, size_max=4), build_broker(settings))
        try:
            return await work(ctx)
        finally:
            await ctx.close()

    try:
        return asyncio.run(run())
    except PaycellError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from None


def _echo_run(run) -> None:
    from paycell.reconcile import report

    for line in report.text(report.run_view(run)):
        click.echo(line)


@reconcile.command("internal")
def reconcile_internal() -> None:
    """Run the internal reconciliation once (the scheduler runs it hourly)."""
    from paycell.reconcile.internal import run_internal

    settings = _settings()
    logs.configure(settings.log_level)
    _echo_run(_with_context(settings, run_internal))


@reconcile.command("settlement")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--connector", required=True, help="whose report FILE is: stripe, adyen or paypal")
@click.option("--rules", "rules_file", default=None, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="a matching rule set (JSON); default paycell/reconcile/rules.json")
@click.option("--dry-run", is_flag=True, help="show what the rules would match; write nothing")
def reconcile_settlement(file: Path, connector: str, rules_file: Path | None, dry_run: bool) -> None:
    """Reconcile a settlement FILE of CONNECTOR (again: the first run's report, nothing changes)."""
    from paycell.errors import InvalidRequest
    from paycell.reconcile import matching, settlement

    settings = _settings()
    logs.configure(settings.log_level)
    try:
        rules = matching.load(rules_file.read_bytes()) if rules_file else matching.default()
    except InvalidRequest as exc:
        raise click.BadParameter(exc.message, param_hint="--rules") from None
    if dry_run:
        result = _with_context(settings,
                               lambda ctx: settlement.dry_run(ctx.pool, settings, connector, file, rules))
        click.echo(f"dry run of {file} with rule set {result.rules}: {result.lines} lines")
        for outcome, n in result.outcomes.items():
            click.echo(f"  {outcome:<34} {n}")
        return
    ingested = _with_context(settings, lambda ctx: settlement.reconcile_file(ctx, connector, file, rules=rules))
    if ingested.replayed:
        click.echo("this file was reconciled before: its first run's report (nothing changed)")
    _echo_run(ingested.run)


@reconcile.command("report")
@click.argument("run_id", required=False)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1_000))
def reconcile_report(run_id: str | None, limit: int) -> None:
    """A run's report with its breaks, or the most recent runs' reports."""
    from paycell.http.reconcile import run_detail
    from paycell.reconcile import report
    from paycell.store import reconcile as store

    settings = _settings()
    if run_id:
        view = _review_call(settings, lambda conn: run_detail(conn, run_id))
        for line in report.text(view):
            click.echo(line)
        return
    for run in _review_call(settings, lambda conn: store.recent_runs(conn, limit=limit)):
        _echo_run(run)


@main.group()
def payments() -> None:
    """Payments as operators act on them: reversals (paycell.reversals)."""


def _reversal_line(r) -> str:
    from paycell.money import format_amount

    return (f"{r.reversal_id} {r.state:<15} {format_amount(r.amount_minor, r.currency)} {r.currency} "
            f"payment {r.payment_id} user {r.user_id} by {r.requested_by} ({r.origin})"
            f"{' psp ' + r.psp_reference if r.psp_reference else ''}"
            f"{' failure ' + r.failure_code if r.failure_code else ''}: {r.reason}")


@payments.command("reverse")
@click.argument("payment_id")
@click.option("--user", "user_id", required=True, help="whose payment (payment ids are the clients' own UUIDs)")
@click.option("--amount", required=True, help='a decimal string, e.g. 12.34')
@click.option("--currency", required=True, help="the payment's currency, e.g. EUR")
@click.option("--reason", required=True, help="why (kept on the reversal and in the payment's event log)")
@click.option("--as", "operator", required=True, help="the operator's user id")
@click.option("--key", default=None,
              help="idempotency key (default: derived from the payment, amount, currency and reason, so that "
                   "running the same command twice reverses once)")
def payments_reverse(payment_id: str, user_id: str, amount: str, currency: str, reason: str, operator: str,
                     key: str | None) -> None:
    """Reverse (part of) a completed payment: refund a pay-in, recall a pay-out (whole). A worker
    carries it out at the payment's PSP; `paycell payments reversals` shows how it ended."""
    import hashlib
    import uuid

    from paycell import money
    from paycell.actors.broker import build_broker, send
    from paycell.errors import PaycellError
    from paycell.reversals.request import reverse_payment
    from paycell.store.db import create_pool

    settings = _settings()
    logs.configure("warning")
    try:
        payment_id = str(uuid.UUID(payment_id))
        currency = money.parse_currency(currency)
        amount_minor = money.parse_amount(amount, currency, max_minor=settings.amount_minor_max)
    except (ValueError, money.MoneyError) as exc:
        raise click.BadParameter(str(exc)) from None
    reason = reason.strip()
    if not 0 < len(reason) <= 500:
        raise click.BadParameter("1 to 500 characters", param_hint="--reason")
    key = key or "cli:" + hashlib.sha256(f"{payment_id}\x00{amount_minor}\x00{currency}\x00{reason}".encode()).hexdigest()[:40]

    async def run():
        pool = await create_pool(settings, size_max=2)
        try:
            return await reverse_payment(pool, settings, user_id=user_id, payment_id=payment_id,
                                         amount_minor=amount_minor, currency=currency, reason=reason,
                                         requested_by=operator, request_key=key)
        finally:
            await pool.close()

    try:
        reversal, created = asyncio.run(run())
    except PaycellError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from None
    if created:  # after the commit; a lost send is re-driven by the sweeper
        send(build_broker(settings), "reverse", reversal.user_id, reversal.reversal_id)
    click.echo(("recorded " if created else "already recorded ") + _reversal_line(reversal))


@payments.command("reversals")
@click.argument("payment_id")
@click.option("--user", "user_id", required=True, help="whose payment")
def payments_reversals(payment_id: str, user_id: str) -> None:
    """A payment's reversals, oldest first."""
    from paycell.store import reversals as store

    found = _review_call(_settings(), lambda conn: store.for_payment(conn, user_id, payment_id))
    for r in found:
        click.echo(_reversal_line(r))
    click.echo(f"{len(found)} reversal(s)")


@main.group()
def citus() -> None:
    """Distributing the schema on Citus (docs/scale.md)."""


@citus.command("distribute")
@click.option("--worker", "workers", multiple=True, metavar="HOST:PORT",
              help="a worker node to prepare and add (repeat for each); none: the nodes the coordinator has")
@click.option("--shard-count", type=click.IntRange(1, 64000), default=None, help="default: Citus's citus.shard_count")
@click.option("--dry-run", is_flag=True, help="print the statements without running them")
def citus_distribute(workers: tuple[str, ...], shard_count: int | None, dry_run: bool) -> None:
    """Make the migrated database's tables reference or distributed tables, as
    paycell/store/distribution.py places them (the admin URL is the coordinator). Re-runnable."""
    from paycell.citus import cluster, plan
    from paycell.store.db import connect

    settings = _settings()
    if dry_run:
        async def show():
            conn = await connect(settings.admin_database_url)
            try:
                return plan.steps(*await plan.read(conn))
            finally:
                await conn.close()

        for sql, args in asyncio.run(show()):
            click.echo(f"{sql.split('(')[0].removeprefix('SELECT ')} {' '.join(args)}")
        return
    try:
        steps = asyncio.run(cluster.distribute(settings, list(workers), shard_count=shard_count, echo=click.echo))
    except (cluster.CitusUnavailable, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"distributed: {len(steps)} statement(s)")
