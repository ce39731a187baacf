"""The app role cannot mint money (issue 6, item 2).

Postgres itself refuses what a buggy or compromised process holding the app role could try: it
cannot write ledger rows (only post_order() can, and it derives the legs from a payment order in
the state that justifies them), cannot rewrite an order's or a request's money fields, cannot
move an order along a transition the state table does not have, and cannot insert an order
anywhere but in `requested`. The schema belongs to a non-superuser owner role, which the same
triggers bind. Every refused statement runs in a transaction that is rolled back.
"""
from __future__ import annotations

import uuid

import asyncpg
import pytest

from paycell import workflow
from paycell.errors import InsufficientFunds, LedgerError
from paycell.store import ledger, payments
from tests.helpers import (assert_ledger_clean, fund_wallet, new_order, new_user, post_transfer,
                           settle_payin)
from tests.helpers import lock_by_id

ORDER_STATES = list(workflow.ORDER_STATES)



async def _refused(conn, sql: str, *args, error=asyncpg.InsufficientPrivilegeError):
    """Run `sql` in a transaction that is always rolled back; return the error it raised."""
    txn = conn.transaction()
    await txn.start()
    try:
        with pytest.raises(error) as err:
            await conn.execute(sql, *args)
    finally:
        await txn.rollback()
    return err.value


async def _order_in(pool, user: str, kind: str, path: tuple[str, ...], amount_minor: int = 5_00) -> str:
    """An order of `kind` moved legitimately (through payments.move) along `path`."""
    async with pool.acquire() as conn, conn.transaction():
        order_id = await new_order(conn, user, kind, amount_minor, to_user=new_user("payee"))
        order = await lock_by_id(conn, order_id)
        for state in path:
            await payments.move(conn, order, state, event=f"order.{state}")
    return order_id


# -- the exploit: a wallet credited from psp_clearing by hand -----------------------

async def test_the_app_role_cannot_write_ledger_rows_or_accounts(pool, book, migrated):
    user = new_user("mallory")
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT current_user") == migrated.app_role
        # Opening an account is allowed (it holds zero); writing to it is not.
        wallet = await book.user_account(conn, "user_wallet", user, "USD")
        clearing = await book.system_account(conn, "psp_clearing", "test", "USD", key="mint")
        for sql in (
            "INSERT INTO ledger_transaction (idempotency_key, kind) VALUES ('mint-' || gen_random_uuid(), 'payin')",
            f"""WITH t AS (INSERT INTO ledger_transaction (idempotency_key, kind)
                           VALUES ('mint-' || gen_random_uuid(), 'payin') RETURNING transaction_id)
                INSERT INTO ledger_entry (transaction_id, account_id, currency, amount_minor)
                SELECT transaction_id, a, 'USD', x
                  FROM t, (VALUES ({clearing}, -1000000), ({wallet}, 1000000)) v(a, x)""",
            f"INSERT INTO ledger_entry (transaction_id, account_id, currency, amount_minor) "
            f"VALUES (1, {wallet}, 'USD', 1)",
            "INSERT INTO account (code, kind, owner_id, currency) VALUES ('wallet:x-' || gen_random_uuid(), "
            "'user_wallet', 'x', 'USD')",
        ):
            await _refused(conn, sql)
        assert await conn.fetchval("SELECT balance_minor FROM account WHERE account_id = $1", wallet) == 0
    await assert_ledger_clean(pool)


async def test_the_app_role_holds_no_insert_on_ledger_tables(pool):
    for table in ("ledger_transaction", "ledger_entry", "account"):
        assert not await pool.fetchval("SELECT has_table_privilege($1, 'INSERT')", table)
        assert not await pool.fetchval("SELECT has_any_column_privilege($1, 'INSERT')", table)
        assert await pool.fetchval("SELECT has_table_privilege($1, 'SELECT')", table)


# -- orders: frozen money fields, column grants, the state table -----------------------------

FROZEN_ORDER = {
    "amount_minor": "amount_minor = amount_minor * 100",
    "currency": "currency = 'JPY'",
    "kind": "kind = 'payin'",
    "user_id": "user_id = 'someone-else'",
    "from_acct": "from_acct = 'tok_card_ok'",
    "to_acct": "to_acct = 'wallet:mallory'",
    "payment_id": "payment_id = gen_random_uuid()",
}


@pytest.mark.parametrize("column", list(FROZEN_ORDER))
async def test_an_orders_money_fields_are_frozen_for_the_app_and_the_owner(pool, owner, column):
    order_id = await _order_in(pool, new_user(), "transfer", ())
    sql = f"UPDATE payment_order SET {FROZEN_ORDER[column]} WHERE payment_order_id = $1"
    async with pool.acquire() as conn:
        await _refused(conn, sql, uuid.UUID(order_id))  # no UPDATE grant on the column
    err = await _refused(owner, sql, uuid.UUID(order_id), error=asyncpg.CheckViolationError)
    assert err.constraint_name == "payment_order_guard"
    row = await pool.fetchrow("SELECT amount_minor, currency, kind FROM payment_order WHERE payment_order_id = $1",
                              uuid.UUID(order_id))
    assert (row["amount_minor"], row["currency"], row["kind"]) == (5_00, "USD", "transfer")


@pytest.mark.parametrize("column", ["amount_minor = 1", "currency = 'JPY'", "kind = 'payin'",
                                    "to_acct = 'wallet:mallory'", "user_id = 'x'"])
async def test_a_requests_money_fields_are_frozen_for_the_app_and_the_owner(pool, owner, column):
    user = new_user()
    await _order_in(pool, user, "transfer", ())
    sql = f"UPDATE payment_request SET {column} WHERE user_id = $1"
    async with pool.acquire() as conn:
        await _refused(conn, sql, user)
    err = await _refused(owner, sql, user, error=asyncpg.CheckViolationError)
    assert err.constraint_name == "payment_request_guard"


ILLEGAL = [
    ("payin", (), "completed"),                   # a pay-in completes only after its PSP
    ("payin", (), "psp_succeeded"),
    ("payout", (), "psp_pending"),
    ("transfer", (), "psp_submitting"),           # a transfer never goes to a PSP
    ("payin", ("failed",), "psp_submitting"),
    ("transfer", ("completed",), "requested"),
    ("payin", ("psp_submitting", "completed"), "psp_succeeded"),
    ("payin", ("psp_submitting", "failed"), "completed"),
    ("payin", ("psp_submitting", "psp_succeeded"), "failed"),
    ("payin", ("psp_submitting", "needs_attention"), "completed"),
    # A provider's contradiction may send a completed pay-in to needs_attention (issue 7); a
    # transfer has no provider.
    ("transfer", ("completed",), "needs_attention"),
    ("payin", ("psp_submitting",), "returned"),
    ("payin", ("psp_submitting", "failed"), "returned"),
    ("payin", ("psp_submitting", "requires_action"), "psp_submitting"),
    ("transfer", (), "requires_action"),
    ("payout", ("psp_submitting", "psp_pending"), "requested"),
]


@pytest.mark.parametrize("kind,path,to", ILLEGAL, ids=lambda v: "-".join(v) if isinstance(v, tuple) else str(v))
async def test_an_illegal_status_jump_is_refused(pool, owner, kind, path, to):
    order_id = await _order_in(pool, new_user(), kind, path)
    sql = "UPDATE payment_order SET payment_order_status = $2 WHERE payment_order_id = $1"
    for conn_owner in (False, True):
        if conn_owner:
            err = await _refused(owner, sql, uuid.UUID(order_id), to, error=asyncpg.CheckViolationError)
        else:
            async with pool.acquire() as conn:
                err = await _refused(conn, sql, uuid.UUID(order_id), to, error=asyncpg.CheckViolationError)
        assert err.constraint_name == "payment_order_guard"


async def test_the_legal_moves_of_the_steps_pass_and_the_sweeper_may_bump_a_lease(pool):
    await _order_in(pool, new_user(), "payin", ("psp_submitting", "psp_pending", "psp_succeeded", "completed"))
    await _order_in(pool, new_user(), "payout", ("psp_submitting", "needs_attention", "psp_submitting", "failed"))
    order_id = await _order_in(pool, new_user(), "transfer", ("completed",))
    await pool.execute("UPDATE payment_order SET lease_until = now(), attempt = attempt + 1 "
                       "WHERE payment_order_id = $1", uuid.UUID(order_id))


@pytest.mark.parametrize("state", [s for s in ORDER_STATES if s != "requested"])
async def test_an_order_is_inserted_only_in_requested(pool, state):
    async with pool.acquire() as conn:
        txn = conn.transaction()
        await txn.start()
        try:
            user = new_user()
            order_id = await new_order(conn, user, "payin", 1_00)
            with pytest.raises(asyncpg.CheckViolationError) as err:
                await conn.execute(
                    """INSERT INTO payment_order (payment_order_id, payment_id, user_id, kind, from_acct, to_acct,
                                                  amount_minor, currency, payment_order_status, deadline_at)
                       SELECT gen_random_uuid(), payment_id, user_id, kind, from_acct, to_acct, amount_minor,
                              currency, $2, deadline_at FROM payment_order WHERE payment_order_id = $1""",
                    uuid.UUID(order_id), state)
            assert err.value.constraint_name == "payment_order_guard"
        finally:
            await txn.rollback()


async def test_the_sql_state_table_and_workflow_agree(pool):
    """order_transition (migration 0008) holds exactly the (from, to) moves that
    workflow.check_transition allows; `kinds` only narrows them per order kind."""
    allowed = set()
    for a in ORDER_STATES:
        for b in ORDER_STATES:
            try:
                workflow.check_transition(a, b)
            except workflow.IllegalTransition:
                continue
            allowed.add((a, b))
    rows = await pool.fetch("SELECT from_state, to_state, kinds FROM order_transition")
    assert {(r["from_state"], r["to_state"]) for r in rows} == allowed
    assert all(set(r["kinds"]) <= {"payin", "payout", "transfer"} and r["kinds"] for r in rows)


# -- post_order: only what the order justifies ------------------------------------------

REFUSED_STEPS = [
    ("payin", (), "settle"),               # not charged yet
    ("payin", (), "reserve"),
    ("payin", ("psp_submitting",), "release"),
    ("payin", ("psp_submitting",), "transfer"),
    ("payout", (), "settle"),              # no reserve, no PSP
    ("payout", ("psp_submitting",), "release"),  # nothing reserved to release
    ("payout", ("psp_submitting",), "settle"),   # nothing reserved to settle
    ("transfer", ("completed",), "transfer"),
    ("transfer", ("failed",), "transfer"),
    ("transfer", (), "settle"),
    ("payin", ("psp_submitting", "completed"), "settle"),
    ("payin", ("psp_submitting", "needs_attention"), "settle"),
]


@pytest.mark.parametrize("kind,path,step", REFUSED_STEPS,
                         ids=lambda v: "-".join(v) if isinstance(v, tuple) else str(v))
async def test_post_order_refuses_a_step_the_orders_kind_and_state_do_not_justify(pool, book, kind, path, step):
    user = new_user()
    await fund_wallet(pool, book, user, 50_00)
    order_id = await _order_in(pool, user, kind, path)
    async with pool.acquire() as conn:
        with pytest.raises(LedgerError, match="does not justify"):
            async with conn.transaction():
                await ledger.post_order(conn, user, order_id, step, system_slices=4)
        assert not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM ledger_transaction WHERE payment_order_id = $1)",
                                       uuid.UUID(order_id))
    await assert_ledger_clean(pool)


async def test_post_order_refuses_an_unknown_order_or_step(pool):
    async with pool.acquire() as conn:
        with pytest.raises(LedgerError, match="no payment order"):
            await ledger.post_order(conn, new_user(), str(uuid.uuid4()), "settle", system_slices=4)
        with pytest.raises(LedgerError, match="not a posting step"):
            await ledger.post_order(conn, new_user(), str(uuid.uuid4()), "mint", system_slices=4)
        user = new_user()
        order_id = await _order_in(pool, user, "payin", ("psp_submitting",))
        # The order is found by (user, id): another user's id names no order of this one.
        with pytest.raises(LedgerError, match="no payment order"):
            await ledger.post_order(conn, new_user("other"), order_id, "settle", system_slices=4)
        with pytest.raises(asyncpg.CheckViolationError, match="does not justify"):
            await conn.fetch("SELECT * FROM post_order($1, $2, 'mint', 4)", user, uuid.UUID(order_id))
        # The former signature (for processes of the previous release during a deploy) finds the
        # order's user itself and posts the same way.
        with pytest.raises(asyncpg.CheckViolationError, match="does not justify"):
            await conn.fetch("SELECT * FROM post_order($1, 'mint', 4)", uuid.UUID(order_id))
        async with conn.transaction():
            old = await conn.fetch("SELECT * FROM post_order($1, 'settle', 4)", uuid.UUID(order_id))
            again = await ledger.post_order(conn, user, order_id, "settle", system_slices=4)
            order = await payments.lock_order(conn, user, order_id)
            await payments.move(conn, order, "completed", event="order.posted", ledger_updated=True,
                                wallet_updated=True)
        assert not old[0]["replayed"] and again.replayed and again.transaction_id == old[0]["transaction_id"]
    await assert_ledger_clean(pool)


async def test_a_payout_reserve_is_spent_once_settle_or_release(pool, book):
    user = new_user()
    await fund_wallet(pool, book, user, 10_00)
    order_id = await _order_in(pool, user, "payout", (), amount_minor=4_00)
    async with pool.acquire() as conn, conn.transaction():
        order = await lock_by_id(conn, order_id)
        await ledger.post_order(conn, user, order_id, "reserve", system_slices=4)
        await payments.move(conn, order, "psp_submitting", event="order.psp_submitting", psp="test")
        await ledger.post_order(conn, user, order_id, "release", system_slices=4)
    async with pool.acquire() as conn:
        with pytest.raises(LedgerError, match="does not justify"):
            async with conn.transaction():
                await ledger.post_order(conn, user, order_id, "settle", system_slices=4)
        async with conn.transaction():
            order = await lock_by_id(conn, order_id)
            await payments.move(conn, order, "failed", event="order.failed")
    assert await pool.fetchval("SELECT balance_minor FROM account WHERE code = $1", f"wallet:{user}") == 10_00
    await assert_ledger_clean(pool)


async def test_the_legs_come_from_the_order(pool, book):
    """Amount, currency and accounts are the order's: psp_clearing:<psp> -> wallet:<user>. The
    transaction carries the order's user, each entry its account's: the wallet's owner, and for
    the clearing account the owner of the slice of that user, hashtext(user) mod slices."""
    user = new_user()
    async with pool.acquire() as conn, conn.transaction():
        order_id = await new_order(conn, user, "payin", 12_34, "JPY")
        posting = await settle_payin(conn, order_id, psp="acme")
    slice_owner = await pool.fetchval("SELECT 'system:' || ((hashtext($1)::bigint % 4 + 4) % 4)", user)
    rows = await pool.fetch(
        """SELECT a.code, a.kind, e.amount_minor, e.currency, e.user_id
             FROM ledger_entry e JOIN account a USING (user_id, account_id)
            WHERE e.transaction_id = $1 ORDER BY e.amount_minor""", posting.transaction_id)
    assert [(r["code"], r["kind"], r["amount_minor"], r["currency"], r["user_id"]) for r in rows] == [
        ("psp_clearing:acme", "psp_clearing", -12_34, "JPY", slice_owner),
        (f"wallet:{user}", "user_wallet", 12_34, "JPY", user)]
    txn = await pool.fetchrow("SELECT kind, idempotency_key, payment_order_id::text, user_id FROM ledger_transaction "
                              "WHERE transaction_id = $1", posting.transaction_id)
    assert tuple(txn) == ("payin_settle", f"{order_id}:settle", order_id, user)
    await assert_ledger_clean(pool)


async def test_a_transfer_that_would_overdraw_raises_insufficient_funds_and_writes_nothing(pool, book):
    alice, bob = new_user("alice"), new_user("bob")
    await fund_wallet(pool, book, alice, 20_00)
    with pytest.raises(InsufficientFunds):
        await post_transfer(pool, alice, bob, 20_01)
    assert not await pool.fetchval(
        "SELECT EXISTS (SELECT 1 FROM payment_order WHERE user_id = $1 AND kind = 'transfer')", alice)
    posting = await post_transfer(pool, alice, bob, 20_00)  # exactly the balance is fine
    assert sorted(e.balance_after_minor for e in posting.entries) == [0, 20_00]
    await assert_ledger_clean(pool)


# -- the owner role --------------------------------------------------------------------------

async def test_the_schema_belongs_to_a_nologin_non_superuser_owner(pool, migrated):
    role = await pool.fetchrow("SELECT rolsuper, rolcanlogin, rolcreaterole, rolcreatedb FROM pg_roles "
                               "WHERE rolname = $1", migrated.owner_role)
    assert tuple(role) == (False, False, False, False)
    owners = await pool.fetch(
        """SELECT c.relname, pg_get_userbyid(c.relowner) AS owner FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'S') AND c.relname <> 'schema_migration'""")
    assert owners and {r["owner"] for r in owners} == {migrated.owner_role}, owners
    funcs = await pool.fetch(
        """SELECT p.proname, pg_get_userbyid(p.proowner) AS owner, p.prosecdef, p.proconfig FROM pg_proc p
             JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'""")
    assert {r["owner"] for r in funcs} == {migrated.owner_role}
    post = next(r for r in funcs if r["proname"] == "post_order")
    assert post["prosecdef"] and "plan_cache_mode=force_generic_plan" in post["proconfig"]
