"""Test helpers shared by every module: users with balances, and the ledger invariants."""
from __future__ import annotations

import asyncio
import time
import uuid

from paycell.store import ledger
from paycell.store.accounts import AccountBook
from paycell.store.ledger_check import check


def new_user(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def fund_wallet(pool, book: AccountBook, user_id: str, amount_minor: int, currency: str = "USD") -> int:
    """Give `user_id` a wallet holding `amount_minor`, paid in through the test PSP's clearing account."""
    key = f"test-funding:{uuid.uuid4()}"
    async with pool.acquire() as conn, conn.transaction():
        wallet = await book.user_account(conn, "user_wallet", user_id, currency)
        clearing = await book.system_account(conn, "psp_clearing", "test", currency, key=key)
        await ledger.post(conn, key=key, kind="payin", legs=[
            ledger.Leg(clearing, -amount_minor, currency), ledger.Leg(wallet, amount_minor, currency)])
    return wallet


async def funded_pair(pool, book: AccountBook, amount_minor: int) -> tuple[str, str, int, int]:
    """(alice, bob, alice's wallet id, bob's wallet id): Alice holds `amount_minor` USD, Bob nothing."""
    alice, bob = new_user("alice"), new_user("bob")
    a = await fund_wallet(pool, book, alice, amount_minor)
    async with pool.acquire() as conn:
        b = await book.user_account(conn, "user_wallet", bob, "USD")
    return alice, bob, a, b


async def assert_ledger_clean(pool) -> None:
    """The invariants every money-moving test ends with."""
    async with pool.acquire() as conn:
        report = await check(conn)
    assert report.ok, "ledger invariants broken:\n" + "\n".join(report.problems)


async def wait_until(predicate, *, timeout_s: float = 20, interval_s: float = 0.05):
    """Poll an async predicate until it is truthy (tests only: the API waits on NOTIFY)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await predicate()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(interval_s)


def auth_header(settings, user_id: str) -> dict[str, str]:
    from paycell.http.auth import issue_token
    return {"Authorization": f"Bearer {issue_token(settings, user_id)}"}


def payment_body(user_id: str, from_acct: str, to_acct: str, amount: str, option: str, *,
                 currency: str = "USD", payment_id: str | None = None) -> dict:
    return {"payment_id": payment_id or str(uuid.uuid4()), "user_id": user_id, "from_acct": from_acct,
            "to_acct": to_acct, "amount": amount, "currency": currency, "payment_option": option}


TOKEN_OPTION = {"card": "card", "bank": "bank_account", "paypal": "paypal", "applepay": "apple_pay",
                "googlepay": "google_pay"}


async def attach(api, settings, user_id: str, token: str) -> dict:
    """Attach the PSP token `token` to `user_id` through the API (idempotent); returns the instrument."""
    option = TOKEN_OPTION[token.split("_")[1]]
    resp = await api.post("/payments/instrument/v1", headers=auth_header(settings, user_id),
                          json={"token": token, "payment_option": option})
    body = await resp.json()
    assert resp.status in (200, 201), (resp.status, body)
    return body


async def register(api, settings, user_id: str) -> None:
    """Make `user_id` known to paycell (their first authenticated call), so others may pay them."""
    resp = await api.get("/payments/wallet/v1", headers=auth_header(settings, user_id))
    assert resp.status == 200, resp.status


async def pay(api, settings, user_id: str, from_acct: str, to_acct: str, amount: str, option: str, *,
              wait_s: int = 0, currency: str = "USD") -> tuple[int, dict]:
    """POST a payment through the API; returns (HTTP status, body). The caller's instrument (the
    token side of a pay-in or pay-out) is attached first, as a real client would have done."""
    for acct in (from_acct, to_acct):
        if acct.startswith("tok_"):
            await attach(api, settings, user_id, acct)
    headers = auth_header(settings, user_id)
    if wait_s:
        headers["Prefer"] = f"wait={wait_s}"
    resp = await api.post("/payments/payment/v1", headers=headers,
                          json=payment_body(user_id, from_acct, to_acct, amount, option, currency=currency))
    return resp.status, await resp.json()


async def final_payment(api, settings, user_id: str, payment_id: str, *, timeout_s: float = 30) -> dict:
    """The payment once it left `processing` (polled: tests only)."""
    headers = auth_header(settings, user_id)

    async def done():
        resp = await api.get(f"/payments/payment/v1/{payment_id}", headers=headers)
        body = await resp.json()
        return body if body.get("status") not in (None, "processing") else None

    body = await wait_until(done, timeout_s=timeout_s, interval_s=0.1)
    assert body, f"payment {payment_id} still processing after {timeout_s}s"
    return body


async def wallet(api, settings, user_id: str) -> dict[str, tuple[str, str]]:
    resp = await api.get("/payments/wallet/v1", headers=auth_header(settings, user_id))
    assert resp.status == 200
    return {b["currency"]: (b["available"], b["reserved"]) for b in (await resp.json())["balances"]}


async def psp_stats(sim_url: str, key: str | None = None) -> dict:
    import aiohttp
    async with aiohttp.ClientSession() as s, s.get(f"{sim_url}/v1/stats" + (f"/{key}" if key else "")) as r:
        return await r.json()
