"""Verify the whole ledger: the invariants Postgres enforces, checked again from the data.

Rows carry their user (migration 0027): an entry joins its account on (user_id, account_id), a
transaction its order on (user_id, payment_order_id), and a lookup by idempotency key names the
user too (the key is unique per user, and that is the index that finds it)."""
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
          LEFT JOIN (SELECT user_id, account_id, sum(amount_minor) AS total, count(*) AS n
                       FROM ledger_entry GROUP BY user_id, account_id) s USING (user_id, account_id)
         WHERE a.balance_minor <> coalesce(s.total, 0) OR a.entry_count <> coalesce(s.n, 0) LIMIT 20""",
    "negative user funds": """
        SELECT format('account %s (%s %s) is negative: %s', account_id, code, currency, balance_minor)
          FROM account WHERE kind IN ('user_wallet', 'payout_hold') AND balance_minor < 0 LIMIT 20""",
    # An entry names its account by (user_id, account_id) (migration 0027): the account's user.
    "entry account": """
        SELECT CASE WHEN a.account_id IS NULL
                    THEN format('entry %s names account %s of %s, which does not exist', e.entry_id, e.account_id,
                                e.user_id)
                    ELSE format('entry %s is %s on a %s account', e.entry_id, e.currency, a.currency) END
          FROM ledger_entry e LEFT JOIN account a USING (user_id, account_id)
         WHERE a.account_id IS NULL OR e.currency <> a.currency LIMIT 20""",
    "ledger total": """
        SELECT format('all %s balances sum to %s, not zero', currency, sum(balance_minor))
          FROM account GROUP BY currency HAVING sum(balance_minor) <> 0""",
    # A posting is legitimate only as a step of a payment order (post_order, migration 0008):
    # these catch what a superuser, a restored dump or an older schema may have written.
    "posting without order": """
        SELECT format('transaction %s (%s) ties to no payment order%s', t.transaction_id, t.idempotency_key,
                      coalesce(' (' || t.payment_order_id || ' of ' || t.user_id || ' does not exist)', ''))
          FROM ledger_transaction t LEFT JOIN payment_order o USING (user_id, payment_order_id)
         WHERE o.payment_order_id IS NULL AND t.kind <> 'settlement_fee' LIMIT 20""",
    "posting kind": """
        SELECT format('transaction %s is a %s under key %s, not a step of %s order %s',
                      t.transaction_id, t.kind, t.idempotency_key, o.kind, o.payment_order_id)
          FROM ledger_transaction t JOIN payment_order o USING (user_id, payment_order_id)
         WHERE (o.kind, t.kind) NOT IN (('transfer', 'transfer_transfer'), ('payout', 'payout_reserve'),
                                        ('payout', 'payout_settle'), ('payout', 'payout_release'),
                                        ('payin', 'payin_settle'), ('payin', 'payin_return'),
                                        ('payout', 'payout_return'), ('payin', 'payin_refund'),
                                        ('payout', 'payout_reversal'))
            OR (t.idempotency_key <> o.payment_order_id::text || ':' || substr(t.kind, length(o.kind) + 2)
                AND t.kind NOT IN ('payin_refund', 'payout_reversal'))
         LIMIT 20""",
    "posting legs": """
        WITH expected AS (
            SELECT t.transaction_id, o.payment_order_id, o.amount_minor, o.currency,
                   CASE t.kind WHEN 'payin_settle' THEN NULL
                               WHEN 'payout_release' THEN 'payout_hold:' || o.user_id
                               WHEN 'payout_settle' THEN 'payout_hold:' || o.user_id
                               ELSE 'wallet:' || o.user_id END AS debit,
                   CASE t.kind WHEN 'transfer_transfer' THEN o.to_acct
                               WHEN 'payout_reserve' THEN 'payout_hold:' || o.user_id
                               WHEN 'payout_settle' THEN NULL
                               ELSE 'wallet:' || o.user_id END AS credit
              FROM ledger_transaction t JOIN payment_order o USING (user_id, payment_order_id)
             WHERE t.kind NOT IN ('payin_return', 'payout_return',  -- checked below: "return legs"
                                  'payin_refund', 'payout_reversal')  -- and "reversal legs"
        ), legs AS (
            SELECT x.transaction_id, x.payment_order_id,
                   count(*) AS n,
                   bool_and(e.currency = x.currency AND abs(e.amount_minor) = x.amount_minor
                            AND CASE WHEN e.amount_minor < 0 THEN x.debit ELSE x.credit END
                                IS NOT DISTINCT FROM CASE WHEN a.kind = 'psp_clearing' THEN NULL ELSE a.code END
                            AND (a.kind <> 'psp_clearing' OR a.code LIKE 'psp\\_clearing:%')
                            AND a.kind = CASE WHEN a.code LIKE 'wallet:%' THEN 'user_wallet'
                                              WHEN a.code LIKE 'payout\\_hold:%' THEN 'payout_hold'
                                              ELSE 'psp_clearing' END) AS fits
              FROM expected x JOIN ledger_entry e USING (transaction_id)
              JOIN account a ON a.user_id = e.user_id AND a.account_id = e.account_id
             GROUP BY x.transaction_id, x.payment_order_id
        )
        SELECT format('transaction %s does not move order %s''s amount between its accounts (%s entries)',
                      transaction_id, payment_order_id, n)
          FROM legs WHERE n <> 2 OR NOT fits LIMIT 20""",
    # A return (migration 0012) takes a settled payment back: a pay-in's amount goes to its PSP's
    # clearing account from the user's wallet and, for what the wallet could not cover, from
    # receivable:returns (never anything else); a pay-out's comes back from clearing to the wallet.
    # A settlement file's fees (migration 0021, post_settlement_fees): tied to a stored file, not an
    # order; psp_clearing:<psp> is credited and fees:<psp> debited the sum of the fees of the file's
    # matched lines in that currency, nothing else.
    "settlement fee": """
        WITH fee AS (
            SELECT t.transaction_id, t.payment_order_id, t.user_id,
                   (regexp_match(t.idempotency_key, '^settlement_fee:([a-z][a-z0-9_]*):([0-9a-f]{64}):([A-Z]{3})$'))
                       AS part
              FROM ledger_transaction t WHERE t.kind = 'settlement_fee'
        ), expected AS (
            SELECT fee.transaction_id, fee.payment_order_id, fee.user_id, fee.part[1] AS psp, fee.part[3] AS currency,
                   (SELECT sum(l.fee_minor) FROM recon_line l JOIN payment_order o USING (payment_order_id)
                     WHERE l.owner_id = 'recon:' || fee.part[1] AND l.file_sha256 = decode(fee.part[2], 'hex')
                       AND l.currency = fee.part[3] AND l.outcome = 'matched' AND l.category IN ('payin', 'payout')
                       AND l.fee_minor > 0 AND l.fee_minor < o.amount_minor AND o.psp = fee.part[1]
                       AND o.currency = l.currency
                       AND EXISTS (SELECT 1 FROM ledger_transaction s
                                    WHERE s.user_id = o.user_id
                                      AND s.idempotency_key = o.payment_order_id::text || ':settle')) AS total
              FROM fee
        )
        SELECT format('transaction %s is not the fees of a stored settlement file', x.transaction_id)
          FROM expected x
         WHERE x.psp IS NULL OR x.payment_order_id IS NOT NULL OR x.total IS NULL OR x.user_id <> 'system:0'
            OR (SELECT count(*) FILTER (WHERE a.code = 'psp_clearing:' || x.psp AND e.amount_minor = x.total)
                       + count(*) FILTER (WHERE a.code = 'fees:' || x.psp AND e.amount_minor = -x.total)
                       - count(*)
                  FROM ledger_entry e JOIN account a USING (user_id, account_id)
                 WHERE e.transaction_id = x.transaction_id AND e.currency = x.currency) <> 0
            OR (SELECT count(*) FROM ledger_entry e WHERE e.transaction_id = x.transaction_id) <> 2
         LIMIT 20""",
    "return legs": """
        SELECT format('transaction %s (%s) does not take order %s''s amount back between its accounts',
                      t.transaction_id, t.kind, o.payment_order_id)
          FROM ledger_transaction t JOIN payment_order o USING (user_id, payment_order_id)
          JOIN ledger_entry e USING (transaction_id)
          JOIN account a ON a.user_id = e.user_id AND a.account_id = e.account_id
         WHERE t.kind IN ('payin_return', 'payout_return')
         GROUP BY t.transaction_id, t.kind, o.payment_order_id
        HAVING NOT (
            bool_and(e.currency = o.currency)
            AND count(*) FILTER (WHERE a.kind = 'psp_clearing'
                                   AND a.code = 'psp_clearing:' || coalesce(o.psp, 'unknown')
                                   AND e.amount_minor = CASE t.kind WHEN 'payin_return' THEN o.amount_minor
                                                                    ELSE -o.amount_minor END) = 1
            AND count(*) FILTER (WHERE a.kind = 'user_wallet') <= 1
            AND count(*) FILTER (WHERE a.kind = 'receivable') <= CASE t.kind WHEN 'payin_return' THEN 1 ELSE 0 END
            AND count(*) = 1 + count(*) FILTER (WHERE a.kind IN ('user_wallet', 'receivable'))
            AND bool_and(CASE a.kind
                WHEN 'user_wallet' THEN a.code = 'wallet:' || o.user_id
                                        AND CASE t.kind WHEN 'payin_return' THEN e.amount_minor < 0
                                                        ELSE e.amount_minor = o.amount_minor END
                WHEN 'receivable' THEN a.code = 'receivable:returns' AND e.amount_minor < 0
                ELSE true END)) LIMIT 20""",
    # A reversal (migration 0024, post_reversal) is the posting of one succeeded reversal, under
    # the key `<order>:reversal:<reversal id>`: a pay-in's refund moves the reversal's amount to its
    # PSP's clearing account from the wallet and, for what it could not cover, receivable:returns;
    # a pay-out's recall from clearing back to the wallet. The reversals of an order never take
    # back more than its amount.
    "reversal posting": """
        SELECT format('transaction %s (%s) is not the posting of a succeeded reversal of its order',
                      t.transaction_id, t.kind)
          FROM ledger_transaction t
          LEFT JOIN payment_reversal r ON r.user_id = t.user_id AND r.transaction_id = t.transaction_id
                                      AND r.payment_order_id = t.payment_order_id
         WHERE t.kind IN ('payin_refund', 'payout_reversal')
           AND (r.reversal_id IS NULL OR r.state <> 'succeeded'
                OR t.idempotency_key <> t.payment_order_id::text || ':reversal:' || r.reversal_id::text) LIMIT 20""",
    "reversal legs": """
        SELECT format('transaction %s does not move reversal %s''s amount as a %s must', t.transaction_id,
                      r.reversal_id, t.kind)
          FROM ledger_transaction t
          JOIN payment_reversal r ON r.user_id = t.user_id AND r.transaction_id = t.transaction_id
          JOIN payment_order o ON o.user_id = t.user_id AND o.payment_order_id = t.payment_order_id
          JOIN ledger_entry e ON e.transaction_id = t.transaction_id
          JOIN account a ON a.user_id = e.user_id AND a.account_id = e.account_id
         WHERE t.kind IN ('payin_refund', 'payout_reversal')
         GROUP BY t.transaction_id, t.kind, r.reversal_id, r.amount_minor, o.user_id, o.psp
        HAVING NOT (
            count(*) FILTER (WHERE a.kind = 'psp_clearing' AND a.code = 'psp_clearing:' || o.psp
                                   AND e.amount_minor = CASE t.kind WHEN 'payin_refund' THEN r.amount_minor
                                                                    ELSE -r.amount_minor END) = 1
            AND count(*) FILTER (WHERE a.kind = 'user_wallet') <= 1
            AND count(*) FILTER (WHERE a.kind = 'receivable') <= CASE t.kind WHEN 'payin_refund' THEN 1 ELSE 0 END
            AND count(*) = 1 + count(*) FILTER (WHERE a.kind IN ('user_wallet', 'receivable'))
            AND bool_and(CASE a.kind
                WHEN 'psp_clearing' THEN true
                WHEN 'user_wallet' THEN a.code = 'wallet:' || o.user_id
                                        AND CASE t.kind WHEN 'payin_refund' THEN e.amount_minor < 0
                                                        ELSE e.amount_minor = r.amount_minor END
                WHEN 'receivable' THEN a.code = 'receivable:returns' AND e.amount_minor < 0
                ELSE false END)) LIMIT 20""",
    "reversed beyond the payment": """
        SELECT format('order %s: reversals took back %s of its %s', o.payment_order_id, sum(r.amount_minor),
                      o.amount_minor)
          FROM payment_reversal r JOIN payment_order o USING (user_id, payment_order_id)
         WHERE r.state = 'succeeded'
         GROUP BY o.payment_order_id, o.amount_minor HAVING sum(r.amount_minor) > o.amount_minor LIMIT 20""",
    "returned without a return posting": """
        SELECT format('order %s is returned but no return was posted', o.payment_order_id)
          FROM payment_order o
         WHERE o.payment_order_status = 'returned'
           AND NOT EXISTS (SELECT 1 FROM ledger_transaction r
                            WHERE r.user_id = o.user_id AND r.idempotency_key = o.payment_order_id::text || ':return')
         LIMIT 20""",
    "return of an unsettled order": """
        SELECT format('transaction %s returns order %s (%s), which %s', r.transaction_id, o.payment_order_id,
                      o.payment_order_status,
                      CASE WHEN s.transaction_id IS NULL THEN 'was never settled'
                           ELSE 'is neither returned nor waiting for attention' END)
          FROM ledger_transaction r JOIN payment_order o USING (user_id, payment_order_id)
          LEFT JOIN ledger_transaction s ON s.user_id = o.user_id
                                        AND s.idempotency_key = o.payment_order_id::text || ':settle'
         WHERE r.kind IN ('payin_return', 'payout_return')
           AND (s.transaction_id IS NULL OR o.payment_order_status NOT IN ('returned', 'needs_attention'))
         LIMIT 20""",
    "payout reserve": """
        SELECT format('payout order %s: %s', payment_order_id,
                      CASE WHEN bool_or(kind = 'payout_settle') AND bool_or(kind = 'payout_release')
                           THEN 'its reserve was both settled and released'
                           ELSE 'settled or released without a reserve' END)
          FROM ledger_transaction WHERE kind IN ('payout_reserve', 'payout_settle', 'payout_release')
         GROUP BY user_id, payment_order_id
        HAVING (bool_or(kind = 'payout_settle') AND bool_or(kind = 'payout_release'))
            OR NOT bool_or(kind = 'payout_reserve') LIMIT 20""",
    "order differs from its request": """
        SELECT format('payment order %s differs from its payment request %s', o.payment_order_id, o.payment_id)
          FROM payment_order o JOIN payment_request r USING (user_id, payment_id)
         WHERE (o.kind, o.from_acct, o.to_acct, o.amount_minor, o.currency)
               IS DISTINCT FROM (r.kind, r.from_acct, r.to_acct, r.amount_minor, r.currency) LIMIT 20""",
}


async def check(conn: asyncpg.Connection) -> CheckReport:
    """Every transaction balances, every stored balance equals the sum of its entries, no user
    funds are negative, all balances of a currency sum to zero, and every posting is a step of a
    payment order whose kind, amount, currency and accounts it matches (a return: of a settled
    order, now returned or needing attention). Runs in one snapshot."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        problems = []
        for name, sql in _CHECKS.items():
            problems += [f"{name}: {r[0]}" for r in await conn.fetch(sql)]
        counts = await conn.fetchrow("""SELECT (SELECT count(*) FROM ledger_transaction) AS t,
                                               (SELECT count(*) FROM ledger_entry) AS e,
                                               (SELECT count(*) FROM account) AS a""")
    return CheckReport(counts["t"], counts["e"], counts["a"], problems)
