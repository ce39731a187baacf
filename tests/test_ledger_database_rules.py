"""The ledger's rules hold in Postgres itself, not only in paycell's code.

Every statement here is hand-written SQL: first as the application role (the pool connects as
it), which may not write ledger rows at all (migration 0008: it posts through post_order only);
then as the schema owner role, the only role that may, so that the rules the ledger's own
functions rely on are tested where they bind. Whatever a buggy or compromised code path sends,
the database refuses to rewrite history, to move a balance other than through an entry, to
commit an unbalanced transaction, or to let user funds go below zero, and a refusal writes
nothing. Every hand-written ledger statement runs in a transaction that fails or is rolled back,
so the shared test ledger only ever holds postings tied to payment orders.
"""
from __future__ import annotations

import uuid

import asyncpg
import pytest

from tests.helpers import assert_ledger_clean, fund_wallet, new_user, post_transfer


# -- fixtures -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
async def history(pool, book):
    """One posted transfer and one event row to try to rewrite: ids of what exists."""
    alice, bob = new_user("alice"), new_user("bob")
    a = await fund_wallet(pool, book, alice, 50_00)
    posting = await post_transfer(pool, alice, bob, 5_00)
    b = next(e.account_id for e in posting.entries if e.amount_minor > 0)
    event_id = await pool.fetchval(
        "INSERT INTO event (user_id, type, data) VALUES ($1, 'test.rules', $2) RETURNING event_id",
        alice, {"note": "append-only"})
    return {"alice": a, "bob": b, "alice_user": alice, "bob_user": bob, "transaction_id": posting.transaction_id,
            "entry_id": posting.entries[0].entry_id, "event_id": event_id}


@pytest.fixture
async def owner(migrated):
    """A connection as the schema owner role: the admin URL (a superuser on the test cluster),
    then SET ROLE to the owner, which is no superuser."""
    conn = await asyncpg.connect(migrated.admin_database_url)
    await conn.execute(f'SET ROLE "{migrated.owner_role}"')
    yield conn
    await conn.close()


async def _snapshot(conn, *account_ids) -> tuple:
    """What a refused statement must leave unchanged: the accounts' balances and entries.

    (Scoped to the test's own accounts: other suites may post to the same database meanwhile.)
    """
    rows = await conn.fetch(
        """SELECT a.account_id, a.balance_minor, a.entry_count,
                  (SELECT count(*) FROM ledger_entry e WHERE e.account_id = a.account_id) AS entries
             FROM account a WHERE a.account_id = ANY($1::bigint[]) ORDER BY a.account_id""",
        list(account_ids))
    return tuple(tuple(r) for r in rows)


async def _must_fail(conn, sql: str, error=asyncpg.InsufficientPrivilegeError):
    """Run `sql` inside a transaction that is always rolled back (so that, should the rule ever
    break, the statement cannot damage the shared test ledger) and return the error it raised."""
    txn = conn.transaction()
    await txn.start()
    try:
        with pytest.raises(error) as err:
            await conn.execute(sql)
    finally:
        await txn.rollback()
    return err.value


async def _key_exists(conn, key: str) -> bool:
    return await conn.fetchval("SELECT EXISTS (SELECT 1 FROM ledger_transaction WHERE idempotency_key = $1)", key)


# -- the application role cannot rewrite or fake anything ----------------------------------

async def _open_transaction(conn, key: str, kind: str = "transfer") -> int:
    """A ledger transaction row written by hand, as only the owner role may (entries follow)."""
    return await conn.fetchval(
        "INSERT INTO ledger_transaction (user_id, idempotency_key, kind) VALUES ('ledger-rules', $1, $2) "
        "RETURNING transaction_id", key, kind)


def _sql_id(sql) -> str:
    return " ".join(str(sql).split()[:4])


REWRITES = [
    "UPDATE ledger_entry SET amount_minor = amount_minor * 2 WHERE entry_id = {entry_id}",
    "DELETE FROM ledger_entry WHERE entry_id = {entry_id}",
    "UPDATE ledger_transaction SET description = 'rewritten' WHERE transaction_id = {transaction_id}",
    "DELETE FROM ledger_transaction WHERE transaction_id = {transaction_id}",
    "UPDATE event SET type = 'test.rewritten' WHERE event_id = {event_id}",
    "DELETE FROM event WHERE event_id = {event_id}",
    "TRUNCATE ledger_entry",
    "TRUNCATE ledger_transaction CASCADE",
    "TRUNCATE event",
    "TRUNCATE account CASCADE",
    "UPDATE account SET balance_minor = balance_minor + 1000000 WHERE account_id = {alice}",
    "UPDATE account SET entry_count = 0 WHERE account_id = {alice}",
    "DELETE FROM account WHERE account_id = {alice}",
    "INSERT INTO account (code, kind, owner_id, currency, balance_minor) "
    "VALUES ('wallet:rich-{entry_id}', 'user_wallet', 'rich-{entry_id}', 'USD', 1000000)",
    # Since 0008 the app role writes no ledger row at all, balanced or not: post_order only.
    "INSERT INTO account (code, kind, owner_id, currency) VALUES ('wallet:x-{entry_id}', 'user_wallet', 'x', 'USD')",
    "INSERT INTO ledger_transaction (idempotency_key, kind) VALUES ('forged-{entry_id}', 'payin')",
    "INSERT INTO ledger_entry (transaction_id, account_id, currency, amount_minor, balance_after_minor) "
    "VALUES ({transaction_id}, {alice}, 'USD', 1, 999)",
    "INSERT INTO ledger_transaction (transaction_id, idempotency_key, kind) "
    "OVERRIDING SYSTEM VALUE VALUES (-{transaction_id}, 'forged-{entry_id}', 'transfer')",
]


@pytest.mark.parametrize("sql", REWRITES, ids=_sql_id)
async def test_the_app_role_cannot_rewrite_history_or_set_a_balance(pool, history, sql):
    async with pool.acquire() as conn:
        before = await _snapshot(conn, history["alice"], history["bob"])
        await _must_fail(conn, sql.format(**history))
        assert await _snapshot(conn, history["alice"], history["bob"]) == before
        assert await conn.fetchval("SELECT count(*) FROM event WHERE event_id = $1", history["event_id"]) == 1
    await assert_ledger_clean(pool)


async def test_an_unbalanced_transaction_written_by_hand_fails_at_commit_and_writes_nothing(pool, owner, book):
    user = new_user()
    wallet = await fund_wallet(pool, book, user, 10_00)
    key = f"unbalanced:{uuid.uuid4()}"
    conn = owner
    before = await _snapshot(conn, wallet)
    statements_ran = False
    with pytest.raises(asyncpg.CheckViolationError) as err:
        async with conn.transaction():
            txn = await _open_transaction(conn, key)
            await conn.execute("INSERT INTO ledger_entry (transaction_id, user_id, account_id, currency, amount_minor) "
                               "VALUES ($1, $3, $2, 'USD', 1000000)", txn, wallet, user)
            # The entry's trigger already moved the balance inside the transaction ...
            assert await conn.fetchval("SELECT balance_minor FROM account WHERE account_id = $1",
                                       wallet) == 10_00 + 1_000_000
            statements_ran = True
    # ... and only COMMIT, where the deferred zero-sum trigger runs, refuses it.
    assert statements_ran
    assert err.value.constraint_name == "ledger_transaction_balanced"
    assert "does not balance" in str(err.value)
    assert not await _key_exists(conn, key)
    assert await _snapshot(conn, wallet) == before
    await assert_ledger_clean(pool)


async def test_a_transaction_balanced_in_one_currency_but_not_another_fails_at_commit(pool, owner, book):
    user = new_user()
    usd = await fund_wallet(pool, book, user, 10_00, "USD")
    jpy = await fund_wallet(pool, book, user, 1_000, "JPY")
    key = f"cross-currency:{uuid.uuid4()}"
    conn = owner
    before = await _snapshot(conn, usd, jpy)
    with pytest.raises(asyncpg.CheckViolationError) as err:
        async with conn.transaction():
            txn = await _open_transaction(conn, key, 'fx')
            # -5.00 USD and +500 JPY: the amounts sum to zero, the currencies do not.
            await conn.execute("INSERT INTO ledger_entry (transaction_id, user_id, account_id, currency, amount_minor) "
                               "VALUES ($1, $4, $2, 'USD', -500), ($1, $4, $3, 'JPY', 500)", txn, usd, jpy, user)
    assert err.value.constraint_name == "ledger_transaction_balanced"
    assert not await _key_exists(conn, key)
    assert await _snapshot(conn, usd, jpy) == before
    await assert_ledger_clean(pool)


async def test_no_entry_can_join_a_transaction_committed_earlier_even_a_balanced_pair(pool, owner, history):
    """The zero-sum check runs once, when a transaction commits: entries may join only a ledger
    transaction created by the same database transaction, so history cannot be extended later."""
    conn = owner
    before = await _snapshot(conn, history["alice"], history["bob"])
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="same database transaction"):
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO ledger_entry (transaction_id, user_id, account_id, currency, amount_minor) "
                "VALUES ($1, $4, $2, 'USD', -100), ($1, $5, $3, 'USD', 100)",
                history["transaction_id"], history["alice"], history["bob"], history["alice_user"], history["bob_user"])
    assert await _snapshot(conn, history["alice"], history["bob"]) == before
    await assert_ledger_clean(pool)


async def test_a_transaction_without_entries_fails_at_commit(pool, owner):
    key = f"empty:{uuid.uuid4()}"
    conn = owner
    with pytest.raises(asyncpg.CheckViolationError) as err:
        async with conn.transaction():
            await conn.execute("INSERT INTO ledger_transaction (user_id, idempotency_key, kind) "
                               "VALUES ('ledger-rules', $1, 'transfer')", key)
    assert err.value.constraint_name == "ledger_transaction_balanced"
    assert "has no entries" in str(err.value)
    assert not await _key_exists(conn, key)
    await assert_ledger_clean(pool)


async def test_an_entry_in_another_currency_than_its_account_is_refused(pool, owner, book):
    user = new_user()
    usd = await fund_wallet(pool, book, user, 10_00, "USD")
    key = f"wrong-currency:{uuid.uuid4()}"
    conn = owner
    jpy = await book.user_account(conn, "user_wallet", user, "JPY")
    before = await _snapshot(conn, usd, jpy)
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        async with conn.transaction():
            txn = await _open_transaction(conn, key)
            # Balanced in JPY, but the first entry sits on the USD wallet.
            await conn.execute("INSERT INTO ledger_entry (transaction_id, user_id, account_id, currency, amount_minor) "
                               "VALUES ($1, $4, $2, 'JPY', -500), ($1, $4, $3, 'JPY', 500)", txn, usd, jpy, user)
    assert not await _key_exists(conn, key)
    assert await _snapshot(conn, usd, jpy) == before
    await assert_ledger_clean(pool)


async def test_a_hand_written_entry_pair_cannot_take_a_wallet_below_zero(pool, owner, book):
    alice, bob = new_user("alice"), new_user("bob")
    a = await fund_wallet(pool, book, alice, 3_00)
    key = f"overdraw:{uuid.uuid4()}"
    conn = owner
    b = await book.user_account(conn, "user_wallet", bob, "USD")
    before = await _snapshot(conn, a, b)
    with pytest.raises(asyncpg.CheckViolationError) as err:
        async with conn.transaction():
            txn = await _open_transaction(conn, key)
            await conn.execute("INSERT INTO ledger_entry (transaction_id, user_id, account_id, currency, amount_minor) "
                               "VALUES ($1, $4, $2, 'USD', 301), ($1, $5, $3, 'USD', -301)",
                               txn, b, a, bob, alice)
    assert err.value.constraint_name == "account_user_funds_never_negative"
    assert not await _key_exists(conn, key)
    assert await _snapshot(conn, a, b) == before
    await assert_ledger_clean(pool)


async def test_a_hand_written_entry_on_an_unknown_account_is_refused(pool, owner):
    key = f"ghost:{uuid.uuid4()}"
    conn = owner
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        async with conn.transaction():
            txn = await _open_transaction(conn, key)
            await conn.execute("INSERT INTO ledger_entry (transaction_id, user_id, account_id, currency, amount_minor) "
                               "VALUES ($1, 'ghost', -1, 'USD', 100), ($1, 'ghost', -2, 'USD', -100)", txn)
    assert not await _key_exists(conn, key)


async def test_an_entry_names_its_account_with_the_accounts_user(pool, owner, history):
    """An entry names its account by (user_id, account_id) (migration 0027): an existing account id
    under another user is no account, refused like an unknown one."""
    key = f"other-user:{uuid.uuid4()}"
    before = await _snapshot(owner, history["alice"], history["bob"])
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="no such account"):
        async with owner.transaction():
            txn = await _open_transaction(owner, key)
            await owner.execute(
                "INSERT INTO ledger_entry (transaction_id, user_id, account_id, currency, amount_minor) "
                "VALUES ($1, $3, $2, 'USD', -100), ($1, $3, $4, 'USD', 100)",
                txn, history["alice"], history["bob_user"], history["bob"])
    assert not await _key_exists(owner, key)
    assert await _snapshot(owner, history["alice"], history["bob"]) == before
    await assert_ledger_clean(pool)


# -- even the schema owner cannot rewrite history -------------------------------------------

OWNER_REWRITES = [
    "UPDATE ledger_entry SET amount_minor = amount_minor * 2 WHERE entry_id = {entry_id}",
    "DELETE FROM ledger_entry WHERE entry_id = {entry_id}",
    "TRUNCATE ledger_entry",
    "UPDATE ledger_transaction SET description = 'rewritten' WHERE transaction_id = {transaction_id}",
    "DELETE FROM ledger_transaction WHERE transaction_id = {transaction_id}",
    "UPDATE event SET type = 'test.rewritten' WHERE event_id = {event_id}",
    "DELETE FROM event WHERE event_id = {event_id}",
    "TRUNCATE event",
    "DELETE FROM account WHERE account_id = {alice}",
    "UPDATE account SET owner_id = 'someone-else' WHERE account_id = {alice}",
    "UPDATE account SET user_id = 'someone-else' WHERE account_id = {alice}",
    "UPDATE ledger_entry SET user_id = 'someone-else' WHERE entry_id = {entry_id}",
    "UPDATE account SET currency = 'EUR' WHERE account_id = {alice}",
    # A balance moves only through an entry, for the owner too (migration 0005).
    "UPDATE account SET balance_minor = balance_minor + 1000000 WHERE account_id = {alice}",
    "UPDATE account SET entry_count = 0 WHERE account_id = {alice}",
]


@pytest.mark.parametrize("sql", OWNER_REWRITES, ids=_sql_id)
async def test_the_schema_owner_cannot_rewrite_history_either(owner, history, pool, sql):
    assert not await owner.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    before = await _snapshot(owner, history["alice"], history["bob"])
    err = await _must_fail(owner, sql.format(**history))
    assert "append-only" in str(err) or "account" in str(err)
    assert await _snapshot(owner, history["alice"], history["bob"]) == before
    assert await owner.fetchval("SELECT count(*) FROM event WHERE event_id = $1", history["event_id"]) == 1
    await assert_ledger_clean(pool)
