"""The README's demo, through the running API: the users attach their test instruments (and Bob a
Stripe card), then pay-ins (one through the Stripe connector), a transfer and pay-outs for two users, each payment's final status, the wallets, and the
ledger check. Then the risk engine with the default rules: Mallory's sixth pay-in from one card in
ten minutes is blocked as card testing, and Carol's 600.00 first pay-in from a card attached a
moment ago waits in the review queue until an operator approves it. Last, Alice schedules a weekly
pay-in that starts a few seconds later: the scheduler makes its first payment during the demo."""
from __future__ import annotations

import asyncio
import datetime
import uuid

import aiohttp
import click

from paycell.config import Settings
from paycell.http.auth import OPERATOR, issue_token
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
        unexpected += await _risk_demo(http, settings, run, headers)
        unexpected += await _schedule_demo(http, alice, headers)
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


async def _pay(http, headers, user: str, src: str, dst: str, amount: str, option: str) -> dict:
    body = {"payment_id": str(uuid.uuid4()), "user_id": user, "from_acct": src, "to_acct": dst,
            "amount": amount, "currency": "USD", "payment_option": option}
    async with http.post("/payments/payment/v1", json=body, headers=headers(user, Prefer="wait=10")) as r:
        return await r.json()


def _line(label: str, out: dict, expected: str) -> str:
    status = out.get("status") or out.get("error", {}).get("code")
    failure = f" ({out['failure_code']})" if out.get("failure_code") else ""
    return f"  {label}: {status}{failure}" + ("" if status == expected else f"   <- expected {expected}")


async def _risk_demo(http, settings: Settings, run: str, headers) -> int:
    """The default rules at work; returns how many payments did not end as the README says."""
    mallory, carol, ops = f"mallory-{run}", f"carol-{run}", f"ops-{run}"
    operator = {"Authorization": f"Bearer {issue_token(settings, ops, roles=(OPERATOR,))}"}
    unexpected = 0
    click.echo("risk: the default rules (paycell/rules/default.rules)")
    for user in (mallory, carol):
        async with http.post("/payments/instrument/v1", json={"token": "tok_card_ok", "payment_option": "card",
                                                              "connector": "test"}, headers=headers(user)) as r:
            await r.read()
    for n in range(1, 7):
        out = await _pay(http, headers, mallory, "tok_card_ok", f"wallet:{mallory}", "1.00", "card")
        expected = "failed" if n == 6 else "succeeded"
        unexpected += (out.get("status") != expected)
        if n in (1, 5, 6):
            click.echo(_line(f"pay-in {n} of 1.00 USD by {mallory} from one card", out, expected))
    out = await _pay(http, headers, carol, "tok_card_ok", f"wallet:{carol}", "600.00", "card")
    unexpected += out.get("status") != "processing"
    click.echo(_line(f"pay-in 600.00 USD by {carol} from a card added a moment ago", out, "processing")
               + "  (parked for review)")
    items = await _open_items_of(http, operator, out.get("payment_id"))
    if not items:
        click.echo("  no review item found for it")
        return unexpected + 1
    item = items[0]
    click.echo(f"  review {item['review_id']}: {', '.join(item['reasons'])}; approved by {ops}")
    async with http.post(f"/reviews/{item['review_id']}/approve", json={"note": "known customer (demo)"},
                         headers=operator) as r:
        await r.read()
    final = await _wait_done(http, headers, carol, out["payment_id"])
    unexpected += final.get("status") != "succeeded"
    click.echo(_line(f"pay-in 600.00 USD by {carol} after approval", final, "succeeded"))
    return unexpected


SCHEDULE_LEAD_S = 3


async def _schedule_demo(http, alice: str, headers) -> int:
    """A weekly pay-in of 5.00 USD from Alice's card, starting SCHEDULE_LEAD_S from now: the
    scheduler runs its first occurrence and the run shows the payment's outcome. Then cancelled."""
    start = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=SCHEDULE_LEAD_S)
    body = {"schedule_id": str(uuid.uuid4()), "user_id": alice, "from_acct": "tok_card_ok",
            "to_acct": f"wallet:{alice}", "amount": "5.00", "currency": "USD", "payment_option": "card",
            "recurrence": "weekly", "time_zone": "UTC", "start": start.strftime("%Y-%m-%dT%H:%M:%S"), "count": 4}
    async with http.post("/payments/scheduled-payment/v1", json=body, headers=headers(alice)) as r:
        out = await r.json()
    if r.status != 201:
        click.echo(f"schedule: HTTP {r.status} {out.get('error', {}).get('code')}   <- expected 201")
        return 1
    click.echo(f"schedule: {alice} pays in 5.00 USD weekly ({out['recurrence']}, 4 times); next: "
               f"{', '.join(t[5:16] for t in out['next_occurrences'][:2])} ...")
    path = f"/payments/scheduled-payment/v1/{body['schedule_id']}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SCHEDULE_LEAD_S + 30
    runs: list = []
    while loop.time() < deadline:
        async with http.get(path, headers=headers(alice)) as r:
            runs = (await r.json()).get("last_runs", [])
        if runs and runs[0]["outcome"] != "pending":
            break
        await asyncio.sleep(0.5)
    async with http.delete(path, headers=headers(alice)) as r:
        cancelled = (await r.json()).get("status")
    outcome = runs[0]["outcome"] if runs else "no run"
    click.echo(f"  scheduled run at {runs[0]['occurrence_at'] if runs else '-'}: {outcome}"
               + (f" (payment {runs[0]['payment_id']})" if runs else "")
               + ("" if outcome == "succeeded" else "   <- expected succeeded"))
    click.echo(f"  schedule {cancelled} (its payment stays)")
    return int(outcome != "succeeded" or cancelled != "cancelled")


async def _wait_done(http, headers, user: str, payment_id: str, timeout_s: float = 20) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        async with http.get(f"/payments/payment/v1/{payment_id}", headers=headers(user)) as r:
            out = await r.json()
        if out.get("status") != "processing" or loop.time() > deadline:
            return out
        await asyncio.sleep(0.2)


async def _open_items_of(http, operator: dict, payment_id: str | None, *, pages_max: int = 100) -> list[dict]:
    """The open review items of one payment, paging through the queue (oldest first: other items,
    reconciliation's among them, may come before it)."""
    query = "/reviews?state=open&limit=100"
    for _ in range(pages_max):
        async with http.get(query, headers=operator) as r:
            page = await r.json()
        found = [i for i in page.get("data", []) if i.get("payment_id") == payment_id]
        if found or not page.get("has_more"):
            return found
        query = f"/reviews?state=open&limit=100&starting_after={page['next_cursor']}"
    return []
