"""The checker: every type problem of a rule set, reported together, and the set rejected whole."""
from __future__ import annotations

import pytest

from paycell.errors import RuleSetInvalid, RuleSyntaxError
from paycell.rules.check import compile_rules

LISTS = ["blocked_countries", "blocked_users"]

INVALID = [
    ('block "x" when colour = "red"', 1, 16, "unknown field colour: expected one of amount,"),
    ('block "x" when country = "FR"', 1, 16, "unknown field country (did you mean ip.country?)"),
    ('block "x" when amount > 5', 1, 16, "cannot compare amount (money) with the number 5 (number)"),
    ('block "x" when amount > "5.00"', 1, 16, 'cannot compare amount (money) with the text "5.00" (text)'),
    ('block "x" when user = 5.00 USD', 1, 16, "cannot compare user (text) with an amount in USD (money)"),
    ('block "x" when instrument.age < 5', 1, 16, "cannot compare instrument.age (duration) with the number 5"),
    ('block "x" when sum(amount of payins of user in last 1 day) > sum(amount of payouts of user in last 1 day)',
     1, 16, "sum(...) takes its currency from the other side: compare it with an amount"),
    ('block "x" when count(payments of user in last 1 hour) > 5.00 USD', 1, 16,
     "cannot compare count(...) (count) with an amount in USD (money)"),
    ('block "x" when count(payments of user in last 1 hour) > 2.5', 1, 57, "a count is a whole number, not 2.5"),
    ('block "x" when count(payments of user in last 91 days) > 2', 1, 16,
     "the window of count(...) must be more than 0 and at most 90 days"),
    ('block "x" when count(payments of user in last 0 minutes) > 2', 1, 16,
     "the window of count(...) must be more than 0 and at most 90 days"),
    ('block "x" when model.score > 1.5', 1, 30, "model.score is between 0 and 1, not 1.5"),
    ('block "x" when model.score > 5.00 USD', 1, 16, "cannot compare model.score (score) with an amount in USD"),
    ('block "x" when ip.country > "FR"', 1, 16, "text compares only with = or !=, not >"),
    ('block "x" when direction = "sideways"', 1, 28, 'unknown direction "sideways": expected payin, payout or transfer'),
    ('block "x" when currency in ["usd"]', 1, 29, 'unknown currency "usd": expected an ISO 4217 code like "USD"'),
    ('block "x" when amount in list:blocked_users', 1, 16, "in applies to a text field (country, ip, user, ...), not amount"),
    ('block "x" when ip.country in ["FR", 5]', 1, 37, "a list for ip.country holds quoted texts, not the number 5"),
    ('block "x" when user in list:vip_users', 1, 16, "unknown list list:vip_users (known lists: blocked_countries, blocked_users)"),
    ('block "x" when "a" = "a"', 1, 16, "a comparison needs a field or an aggregate on one side, not two constants"),
]


@pytest.mark.parametrize(("text", "line", "column", "message"), INVALID, ids=[t[0][15:50] for t in INVALID])
def test_type_error_names_its_position_and_the_problem(text, line, column, message):
    with pytest.raises(RuleSetInvalid) as raised:
        compile_rules(text, known_lists=LISTS)
    (problem,) = raised.value.problems
    assert (problem.line, problem.column) == (line, column)
    assert problem.message.startswith(message), problem.message
    assert raised.value.code == "rules_invalid"


def test_every_problem_is_reported_in_file_order_and_the_set_is_rejected_whole():
    text = ('allow "fine" when user = "u1"\n'
            'block "a" when colour = "red" and amount > 5\n'
            'review "b" when model.score >= 2\n')
    with pytest.raises(RuleSetInvalid) as raised:
        compile_rules(text)
    assert [(p.line, p.column) for p in raised.value.problems] == [(2, 16), (2, 35), (3, 32)]
    assert str(raised.value).startswith("line 2, column 16: unknown field colour")


def test_a_syntax_error_stops_before_the_checker():
    with pytest.raises(RuleSyntaxError):
        compile_rules('block "a" when colour = "red"\nblock "b" when')


def test_list_names_are_free_when_no_known_lists_are_given():
    assert len(compile_rules('block "x" when user in list:anything').rules) == 1


def test_field_against_field_of_the_same_type_is_allowed():
    rule_set = compile_rules('review "x" when ip.country != instrument.country and amount > 0.01 EUR')
    assert rule_set.rules[0].reason == "x"


@pytest.mark.parametrize("score", ["0", "1", "0.5", "1.0"])
def test_score_bounds_are_inclusive(score):
    compile_rules(f'review "x" when model.score >= {score}')


def test_currency_mismatch_between_two_amounts_is_reported():
    with pytest.raises(RuleSetInvalid) as raised:
        compile_rules('block "x" when 5.00 USD < 6.00 EUR')
    assert [p.message for p in raised.value.problems] == [
        "a comparison needs a field or an aggregate on one side, not two constants",
        "currency mismatch: USD compared with EUR"]
