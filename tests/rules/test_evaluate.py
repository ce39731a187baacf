"""The evaluator: each predicate, aggregate and action, precedence and triggers, on real facts and
a real in-memory payment history."""
from __future__ import annotations

import datetime

import pytest

from paycell.rules.check import compile_rules
from paycell.rules.evaluate import Decision, FiredRule, UnknownList, decide, evaluate
from tests.rules.history import EMPTY, NOW, PastPayment, PaymentHistory, facts



async def action(rule_text: str, history=EMPTY, lists=None, **fact_overrides) -> str:
    decision = evaluate(compile_rules(rule_text), facts(**fact_overrides), history, lists or {})
    return decision.action


@pytest.mark.parametrize(("condition", "overrides", "fires"), [
    ('amount > 100.00 USD', {}, False),
    ('amount >= 100.00 USD', {}, True),
    ('amount = 100.00 USD', {}, True),
    ('amount != 100.00 USD', {}, False),
    ('amount < 100.01 USD', {}, True),
    ('amount <= 99.99 USD', {}, False),
    ('100.00 USD <= amount', {}, True),
    ('amount >= 100.00 EUR', {}, False),  # another currency: says nothing about a USD payment
    ('currency = "USD"', {}, True),
    ('direction = "payout"', {}, False),
    ('option = "card"', {}, True),
    ('connector != "adyen"', {}, True),
    ('connector = "adyen"', {"connector": None}, False),
    ('instrument = "tok_1"', {}, True),
    ('user = "u2"', {}, False),
    ('ip = "203.0.113.7"', {}, True),
    ('ip = "203.0.113.7"', {"ip": None}, False),
    ('ip.country != instrument.country', {}, False),
    ('ip.country != instrument.country', {"country": "US"}, True),
    ('ip.country != instrument.country', {"country": None}, False),
    ('instrument.age < 1 day', {}, True),
    ('instrument.age < 1 hour', {}, False),
    ('instrument.age < 1 day', {"instrument_age_s": None}, False),
    ('model.score >= 0.8', {"model_score": 0.8}, True),
    ('model.score > 0.8', {"model_score": 0.8}, False),
    ('model.score >= 0.8', {"model_score": None}, False),
    ('ip.country in ["DE", "FR"]', {}, True),
    ('ip.country not in ["DE", "FR"]', {}, False),
    ('ip.country not in ["DE", "FR"]', {"country": "US"}, True),
    ('ip.country not in ["DE", "FR"]', {"country": None}, False),
    ('not ip.country = "FR"', {}, False),
    ('user = "u1" and ip.country = "US"', {}, False),
    ('user = "u1" or ip.country = "US"', {}, True),
    ('(user = "u2" or ip.country = "FR") and not option = "bank"', {}, True),
])
async def test_predicate(condition, overrides, fires):
    assert await action(f'block "r" when {condition}', **overrides) == ("block" if fires else "allow")


@pytest.mark.parametrize(("currency", "amount_minor", "literal", "fires"), [
    ("JPY", 50_000, "50000 JPY", True),     # exponent 0: 50,000 yen is 50,000 minor units
    ("JPY", 49_999, "50000 JPY", False),
    ("KWD", 1_500, "1.500 KWD", True),      # exponent 3: 1.500 KWD is 1,500 minor units
    ("KWD", 1_499, "1.5 KWD", False),
    ("USD", 1_500, "15 USD", True),         # exponent 2
    ("JPY", 1_500, "15.00 USD", False),     # same minor units, another currency
    ("KWD", 1_500, "15.00 USD", False),
])
async def test_money_compares_in_minor_units_of_its_own_currency(currency, amount_minor, literal, fires):
    result = await action(f'block "r" when amount >= {literal}', amount_minor=amount_minor, currency=currency)
    assert result == ("block" if fires else "allow")


def history(*payments: tuple[str, str, str | None, int, str, int]) -> PaymentHistory:
    """Past payments as (kind, user, instrument, amount_minor, currency, seconds ago)."""
    return PaymentHistory([PastPayment(kind=kind, user_id=user, instrument=instrument, amount_minor=amount,
                                       currency=currency, created_at=NOW - datetime.timedelta(seconds=ago))
                           for kind, user, instrument, amount, currency, ago in payments], NOW)


CARD_TESTING = history(*[("payin", f"u{i}", "tok_1", 100, "USD", 60 * i) for i in range(1, 7)])  # 1..6 minutes ago


@pytest.mark.parametrize(("condition", "fires"), [
    ("count(payments of instrument in last 10 minutes) >= 5", True),
    ("count(payments of instrument in last 10 minutes) >= 7", False),
    ("count(payments of instrument in last 3 minutes) = 2", True),  # 1 and 2 minutes ago; 3 is at the edge
    ("count(payouts of instrument in last 10 minutes) > 0", False),
    ("count(payments of user in last 10 minutes) = 1", True),  # u1's one payment
])
async def test_count_aggregate(condition, fires):
    assert await action(f'block "r" when {condition}', history=CARD_TESTING) == ("block" if fires else "allow")


SPENDER = history(
    ("payout", "u1", "tok_1", 150_000, "USD", 3_600),
    ("payout", "u1", "tok_2", 60_000, "USD", 7_200),
    ("payout", "u1", "tok_2", 900_000, "USD", 2 * 86_400),  # outside 24 hours
    ("payout", "u1", "tok_2", 999_999, "JPY", 60),          # another currency
    ("payin", "u1", "tok_1", 500_000, "USD", 60),            # another kind
    ("payout", "u2", "tok_9", 500_000, "USD", 60),           # another user
)


@pytest.mark.parametrize(("condition", "fires"), [
    ("sum(amount of payouts of user in last 24 hours) > 2000.00 USD", True),   # 2,100.00
    ("sum(amount of payouts of user in last 24 hours) > 2100.00 USD", False),
    ("sum(amount of payouts of user in last 90 minutes) > 1500.00 USD", False),  # only the 1,500.00
    ("sum(amount of payments of user in last 24 hours) > 7000.00 USD", True),  # with the pay-in: 7,100.00
    ("sum(amount of payouts of instrument in last 24 hours) = 1500.00 USD", True),  # tok_1
    ("sum(amount of payouts of user in last 24 hours) = 999999 JPY", True),
    ("sum(amount of payouts of user in last 24 hours) >= amount", True),  # in the payment's own currency
    ("amount <= sum(amount of payouts of user in last 24 hours)", True),
])
async def test_sum_aggregate(condition, fires):
    assert await action(f'review "r" when {condition}', history=SPENDER) == ("review" if fires else "allow")


async def test_instrument_aggregate_on_a_payment_without_instrument_is_false():
    assert await action('block "r" when count(payments of instrument in last 1 day) >= 0',
                        history=CARD_TESTING, instrument=None, trigger="transfer") == "allow"


async def test_named_lists_are_read_at_evaluation():
    rule = 'block "r" when ip.country in list:blocked_countries or user in list:blocked_users'
    lists = {"blocked_countries": frozenset({"KP"}), "blocked_users": frozenset()}
    assert await action(rule, lists=lists) == "allow"
    assert await action(rule, lists=lists, country="KP") == "block"
    assert await action(rule, lists=lists | {"blocked_users": frozenset({"u1"})}) == "block"
    with pytest.raises(UnknownList):
        await action(rule, lists={})


@pytest.mark.parametrize(("trigger", "fires"), [
    ("payin", True), ("payout", True), ("transfer", False), ("schedule_creation", False)])
async def test_rules_apply_only_on_their_triggers(trigger, fires):
    assert await action('block "r" when user = "u1" on payin, payout', trigger=trigger) == (
        "block" if fires else "allow")


@pytest.mark.parametrize("trigger", ["payin", "payout", "transfer", "schedule_creation"])
async def test_a_rule_without_triggers_applies_on_every_trigger(trigger):
    assert await action('review "r" when user = "u1"', trigger=trigger) == "review"


RULES = '''
allow "trusted user" when user = "u1" tags trust
review "large" when amount > 50.00 USD tags size
block "blocked country" when ip.country = "KP" tags geo
review "high score" when model.score >= 0.8 tags model, size
'''


async def test_each_action_and_block_over_review_over_allow():
    rule_set = compile_rules(RULES)
    only_allow = evaluate(rule_set, facts(amount_minor=100), EMPTY, {})
    assert only_allow == Decision(action="allow", reasons=("trusted user",), tags=("trust",),
                                  fired=(FiredRule(line=2, action="allow", reason="trusted user", tags=("trust",)),))
    review = evaluate(rule_set, facts(model_score=0.9), EMPTY, {})
    assert (review.action, review.reasons, review.tags) == ("review", ("large", "high score"), ("trust", "size", "model"))
    assert [f.line for f in review.fired] == [2, 3, 5]
    block = evaluate(rule_set, facts(country="KP", model_score=0.9), EMPTY, {})
    assert (block.action, block.reasons) == ("block", ("blocked country",))
    assert [f.line for f in block.fired] == [2, 3, 4, 5]


async def test_nothing_fired_is_allow_without_reasons():
    decision = evaluate(compile_rules(RULES), facts(user_id="u9", amount_minor=100), EMPTY, {})
    assert decision == Decision(action="allow", reasons=(), tags=(), fired=())


def test_precedence_does_not_depend_on_the_order_rules_are_written():
    rules = [FiredRule(line=n, action=a, reason=a, tags=()) for n, a in enumerate(["block", "allow", "review"])]
    assert decide(rules).action == decide(rules[::-1]).action == "block"
    assert decide(rules[1:]).action == decide(rules[:0:-1]).action == "review"


class CountingHistory(PaymentHistory):
    def __init__(self):
        super().__init__([], NOW)
        self.queries = 0

    def count(self, subject, kind, window_s):
        self.queries += 1
        return super().count(subject, kind, window_s)


async def test_conditions_short_circuit_before_velocity_queries():
    counting = CountingHistory()
    rule_set = compile_rules('block "r" when user = "u2" and count(payments of user in last 1 hour) > 3\n'
                             'block "s" when user = "u1" or count(payments of user in last 1 hour) > 3')
    evaluate(rule_set, facts(), counting, {})
    assert counting.queries == 0
    evaluate(rule_set, facts(user_id="u2"), counting, {})
    assert counting.queries == 2
