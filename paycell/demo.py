"""The README's demo, through the running API: the users attach their test instruments (and Bob a
Stripe card), then pay-ins (one through the Stripe connector), a transfer and pay-outs for two users, each payment's final status, the wallets, and the
ledger check."""
from __future__ import annotations

import uuid

import aiohttp
import click

from paycell.config import Settings
from paycell.http.auth import issue_token
from paycell.store.db import connect
from paycell.store.ledger_check import check


async def pipeline_demo(settings: Settings) -> int:
    base = f"http://{settings.http_host}:{settings.http_port}"
    run = uuid.uuid4().hex[:6]
    alice, bob = f"alice-{run}", f"bob-{run}"
    # (payer, label, from, to, amount, option, the status the README says it ends in)
    steps = [
        (alice, "pay-in  ", "tok_card_ok", f"wallet:{alice}", "100.00", "card", "succeeded"),
        # Through the Stripe connector (the official SDK) and the Stripe-format simulator.
        (bob, "pay-in  ", "pm_card_visa", f"wallet:{bob}", "20.00", "card", "succeeded"),
        (alice, "transfer", f"wallet:{alice}", f"wallet:{bob}", "25.50", "wallet", "succeeded"),
        (bob, "pay-out ", f"wallet:{bob}", "tok_bank_ok", "10.00", "bank_account", "succeeded"),
        (alice, "pay-out ", f"wallet:{alice}", "tok_bank_decline", "5.00", "bank_account", "failed"),
    ]
    unexpected = 0
    async with aiohttp.ClientSession(base) as http:
        def headers(user, **extra):
            return {"Authorization": f"Bearer {issue_token(settings, user)}", **extra}

        click.echo(f"demo users: {alice}, {bob}  (API at {base})")
        # Each user attaches the test instruments they pay in from or out to (which also makes
        # them known to paycell, so Bob can receive Alice's transfer).
        for user, token, option, connector in (
                (alice, "tok_card_ok", "card", "test"), (alice, "tok_bank_decline", "bank_account", "test"),
                (bob, "tok_bank_ok", "bank_account", "test"), (bob, "pm_card_visa", "card", "stripe")):
            async with http.post("/payments/instrument/v1", json={"token": token, "payment_option": option,
                                                                  "connector": connector},
                                 headers=headers(user)) as r:
                out = await r.json()
            click.echo(f"  attach   {token:<16} on {connector:<6} for {user}: HTTP {r.status} "
                       f"{out.get('instrument_id') or out.get('error', {}).get('code')}")
        for user, label, src, dst, amount, option, expected in steps:
            body = {"payment_id": str(uuid.uuid4()), "user_id": user, "from_acct": src, "to_acct": dst,
                    "amount": amount, "currency": "USD", "payment_option": option}
            async with http.post("/payments/payment/v1", json=body, headers=headers(user, Prefer="wait=10")) as r:
                out = await r.json()
            status = out.get("status") or out.get("error", {}).get("code")
            failure = f" ({out['failure_code']})" if out.get("failure_code") else ""
            unexpected += status != expected
            via = out.get("orders", [{}])[0].get("psp") if isinstance(out.get("orders"), list) else None
            click.echo(f"  {label} {amount:>7} USD  {src} -> {dst}{f' via {via}' if via else ''}: "
                       f"HTTP {r.status} {status}{failure}"
                       + ("" if status == expected else f"   <- expected {expected}"))
        for user in (alice, bob):
            async with http.get("/payments/wallet/v1", headers=headers(user)) as r:
                for bal in (await r.json())["balances"]:
                    click.echo(f"  wallet:{user} {bal['currency']} available {bal['available']} "
                               f"reserved {bal['reserved']}")
    conn = await connect(settings.app_database_url)
    try:
        report = await check(conn)
    finally:
        await conn.close()
    click.echo(f"ledger check: {'OK' if report.ok else 'BROKEN'} ({report.transactions} transactions, "
               f"{report.entries} entries)")
    for problem in report.problems:
        click.echo(f"  - {problem}")
    if unexpected:
        click.echo(f"demo: {unexpected} payment(s) did not end as expected; see the process logs above")
    return 0 if report.ok and not unexpected else 1
