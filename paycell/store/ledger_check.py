"""Verify the whole ledger: the invariants Postgres enforces, checked again from the data."""
from __future__ import annotations

import asyncpg
import msgspec


class CheckReport(msgspec.Struct):
    transactions: int
    entries: int
    accounts: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


_CHECKS = {
    "unbalanced transaction": """
        SELECT format('transaction %s is off by %s %s', transaction_id, sum(amount_minor), currency)
          FROM ledger_entry GROUP BY transaction_id, currency HAVING sum(amount_minor) <> 0 LIMIT 20""",
    "empty transaction": """
        SELECT format('transaction %s has no entries', t.transaction_id)
          FROM ledger_transaction t
         WHERE NOT EXISTS (SELECT 1 FROM ledger_entry e WHERE e.transaction_id = t.transaction_id) LIMIT 20""",
    "balance differs from entries": """
        SELECT format('account %s (%s %s) stores %s but its %s entries sum to %s',
                      a.account_id, a.code, a.currency, a.balance_minor, coalesce(s.n, 0), coalesce(s.total, 0))
          FROM account a
          LEFT JOIN (SELECT account_id, sum(amount_minor) AS total, count(*) AS n
                       FROM ledger_entry GROUP BY account_id) s USING (account_id)
         WHERE a.balance_minor <> coalesce(s.total, 0) OR a.entry_count <> coalesce(s.n, 0) LIMIT 20""",
    "negative user funds": """
        SELECT format('account %s (%s %s) is negative: %s', account_id, code, currency, balance_minor)
          FROM account WHERE kind IN ('user_wallet', 'payout_hold') AND balance_minor < 0 LIMIT 20""",
    "entry currency": """
        SELECT format('entry %s is %s on a %s account', e.entry_id, e.currency, a.currency)
          FROM ledger_entry e JOIN account a USING (account_id) WHERE e.currency <> a.currency LIMIT 20""",
    "ledger total": """
        SELECT format('all %s balances sum to %s, not zero', currency, sum(balance_minor))
          FROM account GROUP BY currency HAVING sum(balance_minor) <> 0""",
}


async def check(conn: asyncpg.Connection) -> CheckReport:
    """Every transaction balances, every stored balance equals the sum of its entries, no user
    funds are negative, and all balances of a currency sum to zero. Runs in one snapshot."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        problems = []
        for name, sql in _CHECKS.items():
            problems += [f"{name}: {r[0]}" for r in await conn.fetch(sql)]
        counts = await conn.fetchrow("""SELECT (SELECT count(*) FROM ledger_transaction) AS t,
                                               (SELECT count(*) FROM ledger_entry) AS e,
                                               (SELECT count(*) FROM account) AS a""")
    return CheckReport(counts["t"], counts["e"], counts["a"], problems)
