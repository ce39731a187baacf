"""The screen step reads the user's daily risk total, and the rules' facts and velocity aggregates,
in the statement that locks the order (store/risk_totals.py, risk/velocity_pg.py): a pay-in's
screen costs two statements, lock-and-read and the move (with a model promoted too, whose features
the locking statement reads: tests/risk/test_screen_model.py), and the daily limit still counts
every accepted payment of the day, this one included."""
from __future__ import annotations

import msgspec

from paycell.actors import context
from paycell.actors.screen import _screen
from tests.api.conftest import parked
from tests.api.support import payer, payin, post_payment
from tests.helpers import assert_ledger_clean, key_of


async def _order_ids(pool, user: str) -> list[str]:
    rows = await pool.fetch("SELECT payment_order_id::text FROM payment_order WHERE user_id = $1 ORDER BY created_at",
                            user)
    return [r[0] for r in rows]


async def _screen_logged(pool, ctx: context.Context, order_id: str) -> tuple[str | None, list[str]]:
    """Run the screen step's transaction on `order_id`; (next step, statements it sent)."""
    statements: list[str] = []
    async with pool.acquire() as conn, conn.transaction():
        key = await key_of(conn, order_id)  # the message carries it: not one of the step's statements
        with conn.query_logger(lambda logged: statements.append(logged.query)):
            next_step = await _screen(conn, ctx, *key)
    return next_step, statements


async def _worker_context(pool, settings) -> context.Context:
    """A worker's context whose risk engine has loaded what is in force, as after its first payment:
    within PAYCELL_RISK_RELOAD_S (an hour here) it reads nothing more for it."""
    ctx = context.Context(msgspec.structs.replace(settings, risk_reload_s=3600.0), pool, broker=None)
    async with pool.acquire() as conn:
        await ctx.risk.plan(conn)
    return ctx


async def test_a_screen_costs_two_statements_and_still_counts_the_days_payments(api, migrated, pool):
    daily = msgspec.structs.replace(parked(migrated), risk_daily_amount_minor_max_by_currency={
        **migrated.risk_daily_amount_minor_max_by_currency, "USD": 20_00})
    user = await payer(api, migrated)
    assert (await post_payment(api, migrated, user, payin(user, amount="12.30"))).status == 202
    [first] = await _order_ids(pool, user)
    ctx = await _worker_context(pool, daily)
    next_step, statements = await _screen_logged(pool, ctx, first)
    assert next_step == "charge"
    assert len(statements) == 2, statements  # lock-and-sum, then the move
    assert "FOR UPDATE" in statements[0] and "sum(r.amount_minor)" in statements[0]

    assert (await post_payment(api, migrated, user, payin(user, amount="12.30"))).status == 202
    [_, second] = await _order_ids(pool, user)
    next_step, _ = await _screen_logged(pool, ctx, second)  # 24.60 accepted today > 20.00
    assert next_step is None
    status, code = await pool.fetchrow(
        "SELECT payment_order_status, failure_code FROM payment_order WHERE payment_order_id = $1", second)
    assert (status, code) == ("failed", "daily_limit_exceeded")
    await assert_ledger_clean(pool)
