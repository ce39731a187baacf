"""Test helpers shared by every module: users with balances, and the ledger invariants."""
from __future__ import annotations

import asyncio
import datetime
import time
import uuid

from paycell.store import ledger, payments
from paycell.store.accounts import AccountBook
from paycell.store.ledger_check import check


def new_user(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def new_order(conn, user_id: str, kind: str, amount_minor: int, currency: str = "USD", *,
                    to_user: str | None = None, instrument: str = "tok_card_ok", option: str | None = None) -> str:
    """A payment request and its order in `requested`, written as the API writes them
    (payments.accept); returns the order id. `to_user` is the payee of a transfer; `option` the
    payment option of a pay-in or pay-out (default card)."""
    wallet = f"wallet:{user_id}"
    from_acct, to_acct, option = {
        "payin": (instrument, wallet, option or "card"),
        "payout": (wallet, instrument, option or "card"),
        "transfer": (wallet, f"wallet:{to_user}", "wallet"),
    }[kind]
    order_id = str(uuid.uuid4())
    p = payments.NewPayment(payment_id=str(uuid.uuid4()), payment_order_id=order_id, user_id=user_id, kind=kind,
                            payment_option=option, from_acct=from_acct, to_acct=to_acct, amount_minor=amount_minor,
                            currency=currency, created_at=datetime.datetime.now(datetime.timezone.utc))
    assert await payments.accept(conn, p, request_sha256=b"test", response_status=202, response_body=b"{}",
                                 lock_s=0, lease_s=60, deadline_s=3600)
    return order_id


async def key_of(conn, order_id: str) -> tuple[str, str]:
    """(user id, order id) of an order a test knows by its id alone: its owner looked up
    (payments.owner_of), as paycell's paths that know the id alone do."""
    user_id = await payments.owner_of(conn, order_id)
    assert user_id is not None, f"no order {order_id}"
    return user_id, order_id


async def lock_by_id(conn, order_id: str):
    """payments.lock_order for an order a test knows by its id alone (key_of)."""
    return await payments.lock_order(conn, *await key_of(conn, order_id))


async def read_by_id(conn, order_id: str):
    """payments.read_order for an order a test knows by its id alone (key_of)."""
    return await payments.read_order(conn, *await key_of(conn, order_id))


async def state_by_id(conn, order_id: str) -> str | None:
    """payments.state_of for an order a test knows by its id alone (key_of)."""
    return await payments.state_of(conn, *await key_of(conn, order_id))


async def settle_payin(conn, order_id: str, *, psp: str = "test", slices: int = 4) -> ledger.Posting:
    """Move a pay-in order the legitimate way (requested -> psp_submitting -> completed) and post
    its settlement, in the caller's transaction: what `screen` and `charge` do after a PSP success."""
    order = await lock_by_id(conn, order_id)
    await payments.move(conn, order, "psp_submitting", event="order.psp_submitting", psp=psp, attempt=1)
    posting = await ledger.post_order(conn, order.user_id, order_id, "settle", system_slices=slices)
    await payments.move(conn, order, "completed", event="order.posted", ledger_updated=True, wallet_updated=True)
    return posting


async def fund_wallet(pool, book: AccountBook, user_id: str, amount_minor: int, currency: str = "USD") -> int:
    """Give `user_id` a wallet holding `amount_minor` more, through a real pay-in order settled
    from the test PSP's clearing account; returns the wallet's account id."""
    async with pool.acquire() as conn, conn.transaction():
        order_id = await new_order(conn, user_id, "payin", amount_minor, currency)
        posting = await settle_payin(conn, order_id, slices=book.system_slices)
    return next(e.account_id for e in posting.entries if e.amount_minor > 0)


async def post_transfer(pool, from_user: str, to_user: str, amount_minor: int, currency: str = "USD") -> ledger.Posting:
    """A wallet-to-wallet transfer order posted and completed, as `screen` does it."""
    async with pool.acquire() as conn, conn.transaction():
        order_id = await new_order(conn, from_user, "transfer", amount_minor, currency, to_user=to_user)
        order = await payments.lock_order(conn, from_user, order_id)
        posting = await ledger.post_order(conn, from_user, order_id, "transfer", system_slices=1)
        await payments.move(conn, order, "completed", event="order.posted", ledger_updated=True, wallet_updated=True)
    return posting


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


def operator_header(settings, user_id: str = "ops-alice") -> dict[str, str]:
    """A bearer token carrying the operator role (the risk and review API)."""
    from paycell.http.auth import OPERATOR, issue_token
    return {"Authorization": f"Bearer {issue_token(settings, user_id, roles=(OPERATOR,))}"}


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


# -- provider webhooks (the test simulator's scheme, paycell.psp.simulated) --

SIM_SIGNATURE_HEADER = "Paycell-Sim-Signature"


def sim_event(order_id: str, state: str, *, event_id: str | None = None, amount_minor: int = 1_00,
              currency: str = "USD", reference: str = "ch_test", type_: str | None = None,
              return_code: str | None = None) -> bytes:
    """The body of a test-simulator webhook saying the charge of `order_id` is in `state`."""
    import msgspec
    return msgspec.json.encode({
        "id": event_id or f"evt_{uuid.uuid4().hex}", "type": type_ or f"charge.{state}", "created": int(time.time()),
        "data": {"key": order_id, "reference": reference, "state": state, "refusal_code": None,
                 "direction": "payin", "amount_minor": amount_minor, "currency": currency,
                 "instrument": "tok_card_ok", "action_url": None, "return_code": return_code}})


def sim_signature(secret: str, body: bytes, *, timestamp_s: int | None = None) -> str:
    """`Paycell-Sim-Signature` for `body`, as the simulator signs it (HMAC-SHA256 of "<t>.<body>")."""
    import hashlib
    import hmac
    t = int(time.time()) if timestamp_s is None else timestamp_s
    return f"t={t},v1={hmac.new(secret.encode(), f'{t}.'.encode() + body, hashlib.sha256).hexdigest()}"


async def sim_post(sim_url: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    """POST to the test simulator (its back office, the customer, `/_sim/...` control routes)."""
    import aiohttp
    async with aiohttp.ClientSession() as s, s.post(f"{sim_url}{path}", json=body or {}) as r:
        return r.status, await r.json()


async def inbox_rows(pool, order_id: str) -> list:
    """The stored provider events naming (or applied to) `order_id`, oldest first."""
    return await pool.fetch(
        """SELECT event_id, kind, type, result, applied_at, applied_order_id::text, apply_attempts FROM psp_event
            WHERE payment_order_id = $1 OR applied_order_id = $1 ORDER BY received_at, event_id""",
        uuid.UUID(order_id))


async def postings_of(pool, order_id: str) -> list[str]:
    """The ledger transaction kinds posted for `order_id`, in order."""
    rows = await pool.fetch("SELECT kind FROM ledger_transaction WHERE payment_order_id = $1 ORDER BY transaction_id",
                            uuid.UUID(order_id))
    return [r["kind"] for r in rows]


async def no_periodic_job_overdue(pool) -> None:
    """Move every periodic job's slot to the next minute at the earliest. A scheduler that starts
    runs an overdue job at once (paycell/schedules/periodic.py), and the suite's database holds
    hundreds of parked orders of the API tests past their lease: a sweep in a demo's first seconds
    would hand them all to the demo's worker, ahead of the demo's own payments."""
    await pool.execute("""UPDATE periodic_job
                             SET next_run_at = greatest(next_run_at, date_trunc('minute', now()) + interval '1 minute')""")

