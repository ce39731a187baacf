"""The rule language's syntax: valid rules and the trees they parse to; invalid ones and what the
error says (line, column, what was expected)."""
from __future__ import annotations

from decimal import Decimal

import pytest

from paycell.errors import RuleSetInvalid, RuleSyntaxError
from paycell.rules import ast
from paycell.rules.parse import parse_rules

ALL = ast.TRIGGERS


def F(name, line, column):
    return ast.Field(name=name, line=line, column=column)


VALID = [
    (
        'block "blocked country" when ip.country in list:blocked_countries on payin, payout tags geo',
        ast.Rule(line=1, column=1, action="block", reason="blocked country", triggers=("payin", "payout"), tags=("geo",),
                 condition=ast.Membership(line=1, column=30, operand=F("ip.country", 1, 30), negated=False,
                                          list_name="blocked_countries")),
    ),
    (
        'review "new instrument" when amount > 500.00 USD and instrument.age < 1 day',
        ast.Rule(line=1, column=1, action="review", reason="new instrument", triggers=ALL, condition=ast.And(
            line=1, column=30, operands=(
                ast.Comparison(line=1, column=30, left=F("amount", 1, 30), op=">",
                               right=ast.MoneyLit(line=1, column=39, amount_minor=50000, currency="USD")),
                ast.Comparison(line=1, column=54, left=F("instrument.age", 1, 54), op="<",
                               right=ast.DurationLit(line=1, column=71, seconds=86_400)),
            ))),
    ),
    (
        'block "card testing" when count(payments of instrument in last 10 minutes) >= 5',
        ast.Rule(line=1, column=1, action="block", reason="card testing", triggers=ALL, condition=ast.Comparison(
            line=1, column=27, op=">=",
            left=ast.Aggregate(line=1, column=27, function="count", kind=None, subject="instrument", window_s=600),
            right=ast.NumberLit(line=1, column=79, value=Decimal(5)))),
    ),
    (
        # No reason: the condition's own text, whitespace folded.
        'review when sum(amount of payins of user in last 24 hours) > 2000.00 USD\n   or model.score >= 0.8',
        ast.Rule(line=1, column=1, action="review", triggers=ALL,
                 reason="sum(amount of payins of user in last 24 hours) > 2000.00 USD or model.score >= 0.8",
                 condition=ast.Or(line=1, column=13, operands=(
                     ast.Comparison(line=1, column=13, op=">",
                                    left=ast.Aggregate(line=1, column=13, function="sum", kind="payin", subject="user",
                                                       window_s=86_400),
                                    right=ast.MoneyLit(line=1, column=62, amount_minor=200000, currency="USD")),
                     ast.Comparison(line=2, column=7, left=F("model.score", 2, 7), op=">=",
                                    right=ast.NumberLit(line=2, column=22, value=Decimal("0.8"))),
                 ))),
    ),
    (
        'allow "trusted" when not (option != "card") and country_code not in ["FR", "DE"] on schedule_creation tags a, b-c',
        ast.Rule(line=1, column=1, action="allow", reason="trusted", triggers=("schedule_creation",), tags=("a", "b-c"),
                 condition=ast.And(line=1, column=22, operands=(
                     ast.Not(line=1, column=22, operand=ast.Comparison(
                         line=1, column=27, left=F("option", 1, 27), op="!=",
                         right=ast.TextLit(line=1, column=37, value="card"))),
                     # an unknown field parses: the checker, not the grammar, knows the fields
                     ast.Membership(line=1, column=49, operand=F("country_code", 1, 49), negated=True, values=(
                         ast.TextLit(line=1, column=70, value="FR"), ast.TextLit(line=1, column=76, value="DE"))),
                 ))),
    ),
    (
        'block "p" when ip.country != instrument.country and 5000 JPY <= amount or amount = 1.005 KWD',
        ast.Rule(line=1, column=1, action="block", reason="p", triggers=ALL, condition=ast.Or(
            line=1, column=16, operands=(
                ast.And(line=1, column=16, operands=(
                    ast.Comparison(line=1, column=16, left=F("ip.country", 1, 16), op="!=",
                                   right=F("instrument.country", 1, 30)),
                    ast.Comparison(line=1, column=53, left=ast.MoneyLit(line=1, column=53, amount_minor=5000,
                                                                        currency="JPY"),
                                   op="<=", right=F("amount", 1, 65)),
                )),
                ast.Comparison(line=1, column=75, left=F("amount", 1, 75), op="=",
                               right=ast.MoneyLit(line=1, column=84, amount_minor=1005, currency="KWD")),
            ))),
    ),
]


@pytest.mark.parametrize(("text", "rule"), VALID, ids=[t[:40] for t, _ in VALID])
def test_valid_rule_parses_to_its_tree(text, rule):
    assert parse_rules(text) == ast.RuleSet(rules=(rule,))


def test_and_binds_tighter_than_or_and_parentheses_override():
    (loose,) = parse_rules('block "x" when a = "1" or b = "2" and c = "3"').rules
    assert isinstance(loose.condition, ast.Or) and isinstance(loose.condition.operands[1], ast.And)
    (grouped,) = parse_rules('block "x" when (a = "1" or b = "2") and c = "3"').rules
    assert isinstance(grouped.condition, ast.And) and isinstance(grouped.condition.operands[0], ast.Or)


def test_comments_blank_lines_and_several_rules_keep_their_lines():
    rule_set = parse_rules('# header\n\nblock "a" when user = "u1"  # trailing\n# between\nreview "b"\n  when ip = "1.2.3.4"\n')
    assert [(r.line, r.action, r.reason) for r in rule_set.rules] == [(3, "block", "a"), (5, "review", "b")]


def test_empty_text_is_an_empty_rule_set():
    assert parse_rules("# nothing yet\n") == ast.RuleSet(rules=())


@pytest.mark.parametrize(("unit", "seconds"), [("1 second", 1), ("2 minutes", 120), ("3 hours", 10_800), ("4 days", 345_600)])
def test_window_units(unit, seconds):
    (rule,) = parse_rules(f'block "x" when count(payouts of user in last {unit}) > 1').rules
    assert rule.condition.left.window_s == seconds and rule.condition.left.kind == "payout"


INVALID = [
    # text, line, column, expected (all of them), found
    ('block "x" when count(x', 1, 22, ["'payins'", "'payments'", "'payouts'", "'transfers'"], "'x'"),
    ('review "a" when amount >', 1, 25,
     ["'count'", "'sum'", 'a field (amount, country, model.score, ...)', "a number", 'a quoted text ("...")'],
     "the end of the rules"),
    ('block "x" when amount > 5 USD\nallow "y" when (user = "u"', 2, 27, ["')'"], "the end of the rules"),
    ('block "x" when amount > 5 USD on payin,', 1, 40,
     ["'payin'", "'payout'", "'schedule_creation'", "'transfer'"], "the end of the rules"),
    ('deny "x" when amount > 5 USD', 1, 1, ["'allow'", "'block'", "'review'", "the end of the rules"], "'deny'"),
    ('block "x" amount > 5 USD', 1, 11, ["'when'"], "'amount'"),
    ('block "x" when user == "u"', 1, 22,
     ["'count'", "'sum'", 'a field (amount, country, model.score, ...)', "a number", 'a quoted text ("...")'], "'='"),
    ('block "x" when user in list:Bad', 1, 24, ["'['", "a named list (list:name)"], "'list'"),
]


@pytest.mark.parametrize(("text", "line", "column", "expected", "found"), INVALID, ids=[t[0][:30] for t in INVALID])
def test_syntax_error_names_line_column_and_what_was_expected(text, line, column, expected, found):
    with pytest.raises(RuleSyntaxError) as raised:
        parse_rules(text)
    error = raised.value
    assert (error.line, error.column, error.found) == (line, column, found)
    assert error.expected == sorted(expected)
    assert str(error) == f"line {line}, column {column}: expected {', '.join(error.expected[:-1]) + ' or ' if len(expected) > 1 else ''}{error.expected[-1]}, found {found}"
    assert error.code == "rules_syntax" and error.http_status == 422


def test_unknown_character_is_a_syntax_error_with_its_position():
    with pytest.raises(RuleSyntaxError) as raised:
        parse_rules('block "x"\n  when amount ~ 5 USD')
    assert (raised.value.line, raised.value.column, raised.value.found) == (2, 15, "'~'")
    assert "a comparison (=, !=, <, <=, >, >=)" in raised.value.expected


@pytest.mark.parametrize(("literal", "message"), [
    ("5.001 USD", "USD allows at most 2 decimal places"),
    ("5.5 JPY", "JPY has no minor units"),
    ("1.0001 KWD", "KWD allows at most 3 decimal places"),
    ("5.00 XYZ", "unknown currency 'XYZ'"),
    ("0 USD", "must be greater than zero"),
])
def test_bad_money_literal_is_a_problem_at_its_position(literal, message):
    with pytest.raises(RuleSetInvalid) as raised:
        parse_rules(f'review "x" when amount > 1.00 USD\nblock "y" when amount > {literal}')
    (problem,) = raised.value.problems
    assert (problem.line, problem.column) == (2, 25) and message in problem.message


def test_fractional_duration_is_a_problem():
    with pytest.raises(RuleSetInvalid) as raised:
        parse_rules('review "x" when instrument.age < 1.5 days')
    (problem,) = raised.value.problems
    assert (problem.line, problem.column, problem.message) == (1, 34, "a duration is a whole number of days, not 1.5")
