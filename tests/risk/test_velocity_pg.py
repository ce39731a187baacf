"""The rules' velocity aggregates as Postgres computes them in the screen step's locking statement
(paycell/risk/velocity_pg.py): windows, kinds, currencies, failed payments, instruments."""
from __future__ import annotations

import datetime
import uuid

import pytest

from paycell.risk.velocity_pg import AggregateKey, Prefetch, PrefetchedVelocity
from paycell.rules.check import compile_rules
from paycell.rules.evaluate import VelocitySubject
from paycell.store import risk_totals
from tests.helpers import key_of, new_order, new_user

RULES = """
review when count(payments of user in last 10 minutes) >= 100 on payin, payout
review when count(payins of user in last 1 hour) >= 100 on payin
review when count(payments of instrument in last 10 minutes) >= 100 on payin
review when sum(amount of payins of user in last 1 hour) > 1000.00 USD on payin
review when sum(amount of payments of user in last 1 hour) > amount on payin
review when sum(amount of payouts of user in last 1 day) > 1000.00 EUR on payout
review when count(transfers of user in last 1 day) >= 100 on transfer
"""



async def _past(owner, user: str, at: datetime.datetime, ago: datetime.timedelta, kind: str, amount_minor: int, *,
                currency: str = "USD", token: str = "tok_card_ok", status: str = "succeeded") -> None:
    wallet = f"wallet:{user}"
    src, dst = {"payin": (token, wallet), "payout": (wallet, token), "transfer": (wallet, "wallet:someone")}[kind]
    await owner.execute(
        """INSERT INTO payment_request (payment_id, user_id, payment_option, kind, from_acct, to_acct, amount_minor,
                                        currency, status, created_at, updated_at)
           VALUES ($1, $2, 'card', $3, $4, $5, $6, $7, $8, $9, $9)""",
        uuid.uuid4(), user, kind, src, dst, amount_minor, currency, status, at - ago)


async def _values(pool, order_id: str, prefetch: Prefetch) -> dict:
    async with pool.acquire() as conn, conn.transaction():
        order, _, _, values = await risk_totals.lock_order_for_screen(
            conn, *await key_of(conn, order_id), window_s=86_400, connectors=None, extra=prefetch.expressions, extra_args=prefetch.args)
    return order, prefetch.values(values)


async def test_aggregates_count_and_sum_what_their_definitions_say(owner, pool):
    rule_set = compile_rules(RULES, known_lists=())
    prefetch = Prefetch.for_rule_set(rule_set, risk_totals.EXTRA_FIRST_PARAM)
    user = new_user("velocity")
    async with pool.acquire() as conn:
        order_id = await new_order(conn, user, "payin", 5_00)
        at = await conn.fetchval("SELECT created_at FROM payment_order WHERE payment_order_id = $1", order_id)
    m = datetime.timedelta(minutes=1)
    await _past(owner, user, at, 1 * m, "payin", 100)                        # 10 min, 1 h
    await _past(owner, user, at, 9 * m, "payin", 200, status="failed")       # counted, never summed
    await _past(owner, user, at, 11 * m, "payin", 400, token="tok_card_x1")  # 1 h; another instrument
    await _past(owner, user, at, 30 * m, "payout", 800)                      # payments, not payins
    await _past(owner, user, at, 50 * m, "payin", 1_600, currency="EUR")     # another currency
    await _past(owner, user, at, 61 * m, "payin", 3_200)                     # outside 1 h
    await _past(owner, user, at, -1 * m, "payin", 6_400)                     # after the order: never
    await _past(owner, new_user("velocity"), at, 1 * m, "payin", 12_800)     # another user, same token
    order, values = await _values(pool, order_id, prefetch)
    velocity = PrefetchedVelocity(values, "USD")
    me, card = VelocitySubject("user", user), VelocitySubject("instrument", "tok_card_ok")
    assert velocity.count(me, None, 600) == 2
    assert velocity.count(me, "payin", 3_600) == 4
    assert velocity.count(card, None, 600) == 2
    assert velocity.sum_minor(me, "payin", "USD", 3_600) == 100 + 400
    assert velocity.sum_minor(me, None, "USD", 3_600) == 100 + 400 + 800
    # A pay-in's plan has no pay-out or transfer aggregates: their CASE was not entered.
    assert AggregateKey("sum", "user", "payout", 86_400, "EUR") not in values
    assert AggregateKey("count", "user", "transfer", 86_400, None) not in values
    with pytest.raises(LookupError):
        velocity.sum_minor(me, "payout", "EUR", 86_400)


async def test_a_payouts_plan_reads_its_own_aggregates(owner, pool):
    rule_set = compile_rules(RULES, known_lists=())
    prefetch = Prefetch.for_rule_set(rule_set, risk_totals.EXTRA_FIRST_PARAM)
    user = new_user("velocity")
    async with pool.acquire() as conn:
        order_id = await new_order(conn, user, "payout", 5_00, "EUR")
        at = await conn.fetchval("SELECT created_at FROM payment_order WHERE payment_order_id = $1", order_id)
    await _past(owner, user, at, datetime.timedelta(hours=23), "payout", 70_000, currency="EUR")
    await _past(owner, user, at, datetime.timedelta(hours=25), "payout", 90_000, currency="EUR")
    _, values = await _values(pool, order_id, prefetch)
    velocity = PrefetchedVelocity(values, "EUR")
    assert velocity.sum_minor(VelocitySubject("user", user), "payout", "EUR", 86_400) == 70_000
    assert velocity.count(VelocitySubject("user", user), None, 600) == 0
