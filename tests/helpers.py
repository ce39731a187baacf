"""Test helpers shared by every module: users with balances, and the ledger invariants."""
from __future__ import annotations

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


async def assert_ledger_clean(pool) -> None:
    """The invariants every money-moving test ends with."""
    async with pool.acquire() as conn:
        report = await check(conn)
    assert report.ok, "ledger invariants broken:\n" + "\n".join(report.problems)
