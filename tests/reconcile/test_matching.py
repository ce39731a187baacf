"""Matching rules are data: the same file classified under different rule sets (a dry run writes
nothing), and rule sets that make no sense refused."""
from __future__ import annotations

import pytest

from paycell.errors import InvalidRequest
from paycell.reconcile import matching, settlement
from tests.reconcile.conftest import paid, stripe_file, stripe_txn

ONE = matching.default()
MANY_TO_ONE = matching.load(b'{"name": "partial captures", "strategy": "many_to_one"}')
DRIFT = matching.load(b'{"name": "half a percent", "criteria": [{"field": "currency", "operator": "equals"},'
                      b'{"field": "amount", "operator": "drift_percent", "allowable_drift": "0.5"}]}')


async def _counts(pool, settings, path, rules) -> dict[str, int]:
    return (await settlement.dry_run(pool, settings, "stripe", path, rules)).outcomes


async def test_two_lines_of_one_order_are_a_duplicate_one_to_one_and_a_match_many_to_one(pool, settings, tmp_path):
    split = await paid(pool, "stripe", 30_00)
    path = stripe_file(tmp_path, [stripe_txn(split, gross_minor=10_00), stripe_txn(split, gross_minor=20_00)])
    assert await _counts(pool, settings, path, ONE) == {"amount_mismatch": 1, "duplicate": 1}
    assert await _counts(pool, settings, path, MANY_TO_ONE) == {"matched": 2}
    assert await pool.fetchval("SELECT count(*) FROM recon_line WHERE payment_order_id = $1", split.order_id) == 0


async def test_an_allowable_drift_matches_what_exact_equality_does_not(pool, settings, tmp_path):
    near, far = await paid(pool, "stripe", 100_00), await paid(pool, "stripe", 100_00)
    path = stripe_file(tmp_path, [stripe_txn(near, gross_minor=100_40), stripe_txn(far, gross_minor=100_60)])
    assert await _counts(pool, settings, path, ONE) == {"amount_mismatch": 2}
    assert await _counts(pool, settings, path, DRIFT) == {"matched": 1, "amount_mismatch": 1}


async def test_one_to_many_matches_a_line_naming_a_payment_with_the_sum_of_its_orders(pool, settings, tmp_path):
    p = await paid(pool, "stripe", 45_00)
    payment_id = await pool.fetchval("SELECT payment_id::text FROM payment_order WHERE payment_order_id = $1",
                                     p.order_id)
    p.order_id = payment_id
    rules = matching.load(b'{"name": "batch", "strategy": "one_to_many", "key": "payment_id"}')
    assert await _counts(pool, settings, stripe_file(tmp_path, [stripe_txn(p)]), rules) == {"matched": 1}


@pytest.mark.parametrize("text", [
    b'{"name": "x", "strategy": "one_to_many"}',
    b'{"name": "x", "criteria": [{"field": "currency", "operator": "drift_percent"}]}',
    b'{"name": "x", "criteria": [{"field": "amount", "operator": "drift_percent", "allowable_drift": "150"}]}',
    b'{"name": "x", "criteria": [{"field": "description", "operator": "equals"}]}',
    b'{"name": "x", "strategy": "fuzzy"}',
    b'not json',
])
def test_a_rule_set_that_makes_no_sense_is_refused(text):
    with pytest.raises(InvalidRequest):
        matching.load(text)
