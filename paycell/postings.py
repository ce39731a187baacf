"""What each payment step posts to the ledger, in double entry.

pay-in:   psp_clearing:<psp>  -> wallet:<user>            (settle, on PSP success)
pay-out:  wallet:<user>       -> payout_hold:<user>       (reserve, before the PSP call)
          payout_hold:<user>  -> psp_clearing:<psp>       (settle, on PSP success)
          payout_hold:<user>  -> wallet:<user>            (release, on PSP failure)
transfer: wallet:<a>          -> wallet:<b>
return:   wallet:<user> (+ receivable:returns for what it cannot cover) -> psp_clearing:<psp>
                                                           (pay-in taken back after success)
          psp_clearing:<psp>  -> wallet:<user>            (pay-out that came back after success)

The legs are not built here: Postgres derives them from the order row (post_order, migration
0008) and refuses a step the order's kind and state do not justify, so a bug or a compromised
process holding the app role cannot post anything an order does not call for. Keys derive from
the order id, so a step that runs twice posts once. Each call is one statement, one round trip.
"""
from __future__ import annotations

import asyncpg

from paycell.store import ledger
from paycell.workflow import Order


async def _post(conn: asyncpg.Connection, order: Order, step: str, *, system_slices: int) -> ledger.Posting:
    return await ledger.post_order(conn, order.user_id, order.payment_order_id, step, system_slices=system_slices)


async def transfer(conn: asyncpg.Connection, order: Order, *, system_slices: int) -> ledger.Posting:
    return await _post(conn, order, "transfer", system_slices=system_slices)


async def reserve(conn: asyncpg.Connection, order: Order, *, system_slices: int) -> ledger.Posting:
    return await _post(conn, order, "reserve", system_slices=system_slices)


async def release(conn: asyncpg.Connection, order: Order, *, system_slices: int) -> ledger.Posting:
    return await _post(conn, order, "release", system_slices=system_slices)


async def settle(conn: asyncpg.Connection, order: Order, *, system_slices: int) -> ledger.Posting:
    """The PSP moved the money: pay-in credits the wallet, pay-out spends the reserve."""
    return await _post(conn, order, "settle", system_slices=system_slices)


async def return_payment(conn: asyncpg.Connection, order: Order, *, system_slices: int) -> ledger.Posting:
    """The provider took a completed payment back (ACH return, reversal, chargeback): compensate
    it. A pay-in is taken from the wallet as far as it holds, the rest owed to the receivable."""
    return await _post(conn, order, "return", system_slices=system_slices)


async def receivable_share(conn: asyncpg.Connection, posting: ledger.Posting) -> int:
    """What of a return `posting` the user's wallet could not cover (owed to the receivable)."""
    return await conn.fetchval(
        """SELECT coalesce(sum(-e.amount_minor), 0) FROM ledger_entry e JOIN account a USING (user_id, account_id)
            WHERE e.transaction_id = $1 AND a.kind = 'receivable'""", posting.transaction_id)
