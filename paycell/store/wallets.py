"""The wallet read model: a user's balances per currency, read from the ledger accounts (through
the primary key's prefix, user_id: migration 0027)."""
from __future__ import annotations

import asyncpg
import msgspec


class WalletBalance(msgspec.Struct, frozen=True):
    currency: str
    available_minor: int  # the wallet account: spendable now
    reserved_minor: int   # the payout-hold account: held for pay-outs in flight


async def balances(conn: asyncpg.Connection | asyncpg.Pool, user_id: str) -> list[WalletBalance]:
    rows = await conn.fetch(
        """SELECT currency,
                  sum(balance_minor) FILTER (WHERE kind = 'user_wallet')::bigint AS available,
                  sum(balance_minor) FILTER (WHERE kind = 'payout_hold')::bigint AS reserved
             FROM account WHERE user_id = $1 AND kind IN ('user_wallet', 'payout_hold')
            GROUP BY currency ORDER BY currency""", user_id)
    return [WalletBalance(r["currency"].strip(), r["available"] or 0, r["reserved"] or 0) for r in rows]
