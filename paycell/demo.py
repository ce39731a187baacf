"""The README's demo: money in through a PSP clearing account, between wallets, and back out."""
from __future__ import annotations

import uuid

import click

from paycell.config import Settings
from paycell.money import format_amount
from paycell.store import ledger, wallets
from paycell.store.accounts import AccountBook
from paycell.store.db import connect
from paycell.store.ledger_check import check


async def ledger_demo(settings: Settings) -> int:
    conn = await connect(settings.app_database_url)
    book = AccountBook(settings.system_account_slices)
    run = uuid.uuid4().hex[:8]
    alice, bob = f"alice-{run}", f"bob-{run}"
    try:
        async def move(key, kind, debit, credit, amount_minor, currency="USD"):
            async with conn.transaction():
                await ledger.post(conn, key=f"demo:{run}:{key}", kind=kind, legs=[
                    ledger.Leg(debit, -amount_minor, currency), ledger.Leg(credit, amount_minor, currency)])
            click.echo(f"  {kind:<10} {format_amount(amount_minor, currency):>8} {currency}")

        async with conn.transaction():
            a_wallet = await book.user_account(conn, "user_wallet", alice, "USD")
            b_wallet = await book.user_account(conn, "user_wallet", bob, "USD")
            clearing = await book.system_account(conn, "psp_clearing", "simulator", "USD", key=run)
        click.echo(f"demo users: {alice}, {bob}")
        await move("payin", "payin", clearing, a_wallet, 100_00)
        await move("transfer", "transfer", a_wallet, b_wallet, 25_50)
        await move("payout", "payout", b_wallet, clearing, 10_00)
        for user in (alice, bob):
            for bal in await wallets.balances(conn, user):
                click.echo(f"wallet:{user} {bal.currency} available {format_amount(bal.available_minor, bal.currency)}"
                           f" reserved {format_amount(bal.reserved_minor, bal.currency)}")
        report = await check(conn)
        click.echo(f"ledger check: {'OK' if report.ok else 'BROKEN'} ({report.transactions} transactions)")
        for problem in report.problems:
            click.echo(f"  - {problem}")
        return 0 if report.ok else 1
    finally:
        await conn.close()
