"""The `paycell` command."""
from __future__ import annotations

import asyncio
import sys

import click

from paycell import logs
from paycell.config import SettingsError, load


def _settings():
    try:
        return load()
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
    """Post a few demo transfers through the ledger and print the wallets."""
    from paycell.demo import ledger_demo

    settings = _settings()
    logs.configure("warning")
    sys.exit(asyncio.run(ledger_demo(settings)))


@main.command()
@click.argument("user_id")
@click.option("--ttl-s", type=click.IntRange(min=1), default=None,
              help="Lifetime in seconds (default PAYCELL_JWT_TTL_S).")
def token(user_id: str, ttl_s: int | None) -> None:
    """Print a bearer token for USER_ID (development: anyone holding the secret can mint one)."""
    from paycell.http.auth import issue_token

    try:
        click.echo(issue_token(_settings(), user_id, ttl_s))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
def web() -> None:
    """Serve the HTTP API on PAYCELL_HTTP_HOST:PAYCELL_HTTP_PORT."""
    from paycell.http.app import main as serve

    settings = _settings()
    logs.configure(settings.log_level)
    serve(settings)
