"""The synthetic history: deterministic per seed, every fraud pattern labelled, money in ints."""
from __future__ import annotations

import io
from collections import Counter
from datetime import timedelta

import pytest

from paycell.risk import synthetic
from paycell.risk.synthetic import PATTERNS, generate, read_ndjson, write_ndjson

USERS, DAYS = 250, 30


def _ndjson(seed: int) -> bytes:
    out = io.BytesIO()
    write_ndjson(generate(users=USERS, days=DAYS, seed=seed), out)
    return out.getvalue()


@pytest.fixture(scope="module")
def payments():
    return list(generate(users=USERS, days=DAYS, seed=11))


def test_the_same_seed_gives_the_same_bytes_and_another_seed_other_payments():
    assert _ndjson(3) == _ndjson(3)
    assert _ndjson(3) != _ndjson(4)


def test_every_fraud_pattern_is_generated_and_labelled(payments):
    patterns = Counter(p.pattern for p in payments if p.fraud)
    assert set(patterns) == set(PATTERNS)
    assert all(p.pattern is None for p in payments if not p.fraud)
    assert all(p.pattern in PATTERNS for p in payments if p.fraud)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fraud_is_about_two_percent_of_payments(seed):
    labels = [p.fraud for p in generate(users=400, days=30, seed=seed)]
    share = sum(labels) / len(labels)
    assert 0.015 <= share <= 0.04, share


def test_amounts_are_positive_integers_and_currencies_known(payments):
    assert all(type(p.amount_minor) is int and p.amount_minor > 0 for p in payments)
    assert {p.currency for p in payments} <= {c for c, _ in synthetic.COUNTRIES.values()}


def test_payments_are_in_created_at_order_with_aware_times_and_unique_ids(payments):
    times = [p.created_at for p in payments]
    assert times == sorted(times)
    assert all(t.utcoffset() == timedelta(0) for t in times)
    assert len({p.payment_id for p in payments}) == len(payments)
    assert all(p.instrument_attached_at < p.created_at for p in payments if p.instrument)
    assert all(p.account_created_at < p.created_at for p in payments)


def test_transfers_name_a_counterparty_and_no_instrument(payments):
    for p in payments:
        if p.kind == "transfer":
            assert p.counterparty_user_id not in (None, p.user_id)
            assert p.instrument is None and p.payment_option == "wallet"
        else:
            assert p.counterparty_user_id is None and p.instrument is not None


def test_card_testing_is_small_payins_from_fresh_cards_mostly_declined(payments):
    tests = [p for p in payments if p.pattern == "card_testing"]
    assert {p.kind for p in tests} == {"payin"}
    assert all(p.created_at - p.instrument_attached_at < timedelta(minutes=1) for p in tests)
    assert sum(p.outcome == "declined" for p in tests) / len(tests) > 0.5
    legit_by_currency: dict[str, list[int]] = {}
    for p in payments:
        if not p.fraud and p.kind == "payin":
            legit_by_currency.setdefault(p.currency, []).append(p.amount_minor)
    checked = 0
    for p in tests:
        legit = sorted(legit_by_currency.get(p.currency, []))
        if legit:
            assert p.amount_minor < legit[len(legit) // 2]
            checked += 1
    assert checked > len(tests) // 2


def test_a_mule_pays_out_exactly_what_it_received(payments):
    mule_payments = [p for p in payments if p.pattern == "mule_transfer"]
    received = Counter()
    for p in mule_payments:
        if p.kind == "transfer":
            received[p.counterparty_user_id] += p.amount_minor
    paid_out = Counter()
    for p in mule_payments:
        if p.kind == "payout":
            paid_out[p.user_id] += p.amount_minor
    assert received and received == paid_out
    senders = Counter(p.counterparty_user_id for p in mule_payments if p.kind == "transfer")
    assert min(senders.values()) >= 3


def test_account_takeover_pays_out_several_times_the_usual_from_abroad_to_a_fresh_account(payments):
    payouts = [p for p in payments if p.pattern == "account_takeover" and p.kind == "payout"]
    assert payouts
    checked = 0
    for p in payouts:
        assert p.created_at - p.instrument_attached_at < timedelta(hours=1)
        own = [q for q in payments if q.user_id == p.user_id and not q.fraud and q.kind == "payin"]
        if own:
            home = Counter(q.country for q in own).most_common(1)[0][0]
            usual_minor = sorted(q.amount_minor for q in own)[len(own) // 2]
            assert p.country != home
            assert p.amount_minor > 2 * usual_minor
            checked += 1
    assert checked


def test_the_ndjson_round_trips_and_reports_progress(capsys):
    out = io.BytesIO()
    written = write_ndjson(generate(users=60, days=10, seed=5), out, progress_every=100)
    lines = out.getvalue().splitlines()
    assert written == len(lines) > 100
    assert list(read_ndjson(lines)) == list(generate(users=60, days=10, seed=5))
    assert "payments written" in capsys.readouterr().err


def test_the_command_line_writes_the_file(tmp_path, capsys):
    path = tmp_path / "payments.ndjson"
    assert synthetic.main(["--users", "40", "--days", "7", "--seed", "9", "--out", str(path)]) == 0
    with open(path, "rb") as f:
        assert list(read_ndjson(f)) == list(generate(users=40, days=7, seed=9))
    assert str(path) in capsys.readouterr().err


@pytest.mark.parametrize("kwargs", [{"users": 0}, {"days": 0}, {"fraud_share": 0.0}, {"users": 10**7}])
def test_out_of_bounds_arguments_are_refused(kwargs):
    with pytest.raises(ValueError):
        list(generate(**{"users": 10, "days": 5, "seed": 1, **kwargs}))
