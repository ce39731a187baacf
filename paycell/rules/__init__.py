"""The risk step: the guardrail's hard limits (guardrail.py) and the rule language.

The rule language, one rule per sentence (grammar.lark; default.rules is an example):

    block "card testing" when count(payments of instrument in last 10 minutes) >= 5 on payin tags card-testing
    review "new instrument" when instrument.age < 1 day and amount > 500.00 USD
    block "blocked country" when ip.country in list:blocked_countries
    review when sum(amount of payouts of user in last 24 hours) > 5000.00 EUR or model.score >= 0.8

parse.py turns text into the typed tree of ast.py, check.py type-checks it (`compile_rules`, the
one way in: a rule set with any problem is rejected whole), and evaluate.py walks it over one
payment's PaymentFacts, the velocity aggregates and the named lists, to a Decision.

Rule sets and lists live in Postgres (paycell/store/risk_rules.py, migration 0014), every version
kept; changes.py is the one way to change them (the operator API and `paycell risk`), and
in_force.py is each process's cache of what is in force, reloaded without a restart
(PAYCELL_RISK_RELOAD_S). list_values.py says what a list of each kind may hold.
"""
