"""What each payment step posts to the ledger, in double entry.

pay-in:   psp_clearing:<psp>  -> wallet:<user>            (on PSP success)
pay-out:  wallet:<user>       -> payout_hold:<user>       (reserve, before the PSP call)
          payout_hold:<user>  -> psp_clearing:<psp>       (on PSP success)
          payout_hold:<user>  -> wallet:<user>            (release, on PSP failure)
transfer: wallet:<a>          -> wallet:<b>
Keys derive from the order id, so a step that runs twice posts once.
"""
from __future__ import annotations

import asyncpg

from paycell.errors import LedgerError
from paycell.refs import parse_ref
from paycell.store import ledger
from paycell.store.accounts import AccountBook
from paycell.workflow import Order


async def _move(conn, book: AccountBook, order: Order, step: str, debit: int, credit: int) -> ledger.Posting:
    key = f"{order.payment_order_id}:{step}"
    try:
        return await ledger.post(conn, key=key, kind=f"{order.kind}_{step}", payment_order_id=order.payment_order_id,
                                 legs=[ledger.Leg(debit, -order.amount_minor, order.currency),
                                       ledger.Leg(credit, order.amount_minor, order.currency)])
    except LedgerError:
        book.forget()  # a cached account id may be stale: the retry resolves them afresh
        raise


async def _wallet(conn, book: AccountBook, user_id: str, currency: str) -> int:
    return await book.user_account(conn, "user_wallet", user_id, currency)


async def _hold(conn, book: AccountBook, order: Order) -> int:
    return await book.user_account(conn, "payout_hold", order.user_id, order.currency)


async def _clearing(conn, book: AccountBook, order: Order) -> int:
    return await book.system_account(conn, "psp_clearing", order.psp or "unknown", order.currency,
                                     key=order.payment_order_id)


async def transfer(conn: asyncpg.Connection, book: AccountBook, order: Order) -> ledger.Posting:
    to_user = parse_ref(order.to_acct, "to_acct").user_id
    return await _move(conn, book, order, "transfer", await _wallet(conn, book, order.user_id, order.currency),
                       await _wallet(conn, book, to_user, order.currency))


async def reserve(conn, book: AccountBook, order: Order) -> ledger.Posting:
    return await _move(conn, book, order, "reserve", await _wallet(conn, book, order.user_id, order.currency),
                       await _hold(conn, book, order))


async def release(conn, book: AccountBook, order: Order) -> ledger.Posting:
    return await _move(conn, book, order, "release", await _hold(conn, book, order),
                       await _wallet(conn, book, order.user_id, order.currency))


async def settle(conn, book: AccountBook, order: Order) -> ledger.Posting:
    """The PSP moved the money: pay-in credits the wallet, pay-out spends the reserve."""
    if order.kind == "payin":
        return await _move(conn, book, order, "settle", await _clearing(conn, book, order),
                           await _wallet(conn, book, order.user_id, order.currency))
    return await _move(conn, book, order, "settle", await _hold(conn, book, order), await _clearing(conn, book, order))
