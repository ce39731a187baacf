"""The default rule file ships, compiles against the block lists, and decides sensibly."""
from __future__ import annotations

import datetime

import pytest

from paycell.rules.check import BLOCK_LISTS, compile_rules, default_rules_text
from paycell.rules.evaluate import evaluate
from tests.rules.history import EMPTY, NOW, PastPayment, PaymentHistory, facts

LISTS = {"blocked_users": frozenset({"mallory"}), "blocked_instruments": frozenset({"tok_stolen"}),
         "blocked_ips": frozenset({"198.51.100.66"}), "blocked_countries": frozenset({"KP"})}


@pytest.fixture(scope="module")
def default_rules():
    return compile_rules(default_rules_text(), known_lists=BLOCK_LISTS)


def test_default_rules_compile_with_every_kind_of_rule(default_rules):
    assert {rule.action for rule in default_rules.rules} == {"review", "block"}
    assert len(default_rules.rules) >= 8


@pytest.mark.parametrize(("overrides", "action", "reason"), [
    ({}, "allow", None),
    ({"user_id": "mallory"}, "block", "blocked user"),
    ({"instrument": "tok_stolen"}, "block", "blocked instrument"),
    ({"ip": "198.51.100.66"}, "block", "blocked IP"),
    ({"country": "KP"}, "block", "blocked country"),
    ({"instrument_country": "KP", "country": "FR"}, "block", "blocked country"),
    ({"instrument_age_s": 600, "amount_minor": 60_000}, "review", "new instrument, large amount"),
    ({"instrument_age_s": 600, "amount_minor": 60_000, "currency": "KWD"}, "allow", None),  # no KWD threshold
    ({"instrument_age_s": 600, "amount_minor": 80_000, "currency": "JPY"}, "review", "new instrument, large amount"),
    ({"instrument_age_s": 30 * 86_400, "amount_minor": 60_000}, "allow", None),
    ({"country": "US", "amount_minor": 30_000}, "review", "card and IP countries differ"),
    ({"country": "US", "amount_minor": 30_000, "trigger": "payout", "direction": "payout"}, "allow", None),
    ({"model_score": 0.85}, "review", "high model score"),
    ({"model_score": 0.99}, "block", "very high model score"),
])
async def test_default_rules_decide(default_rules, overrides, action, reason):
    decision = evaluate(default_rules, facts(**({"instrument_age_s": 90 * 86_400} | overrides)), EMPTY, LISTS)
    assert decision.action == action
    assert decision.reasons == (() if reason is None else (reason,))


async def test_default_rules_block_card_testing_on_one_instrument(default_rules):
    attempts = PaymentHistory([PastPayment(kind="payin", user_id=f"u{i}", instrument="tok_1", amount_minor=100,
                                           currency="USD", created_at=NOW - datetime.timedelta(seconds=30 * i))
                               for i in range(5)], NOW)
    decision = evaluate(default_rules, facts(instrument_age_s=90 * 86_400), attempts, LISTS)
    assert (decision.action, decision.reasons, decision.tags) == ("block", ("card testing",), ("card-testing",))


async def test_default_rules_review_a_day_of_large_payouts(default_rules):
    payouts = PaymentHistory([PastPayment(kind="payout", user_id="u1", instrument="iban_1", amount_minor=260_000,
                                          currency="EUR", created_at=NOW - datetime.timedelta(hours=h))
                              for h in (1, 5)], NOW)
    payout = facts(trigger="payout", direction="payout", currency="EUR", instrument="iban_1",
                   instrument_age_s=90 * 86_400)
    assert (evaluate(default_rules, payout, payouts, LISTS)).reasons == ("pay-outs over 5000 in a day",)
    assert (evaluate(default_rules, payout, PaymentHistory(payouts.payments[:1], NOW), LISTS)).action == "allow"
