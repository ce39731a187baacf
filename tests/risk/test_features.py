"""The feature module: known histories give known values, nothing is read from the future, and the
features tell the synthetic fraud patterns from legitimate traffic."""
from __future__ import annotations

import math
import statistics
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from paycell.risk.features import NAMES, Features, MemoryHistory, features, offline
from paycell.risk.synthetic import Payment, generate

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
_counter = iter(range(10**9))


def pay(minutes: float, *, user="usr_a", amount_minor=1_000, currency="EUR", kind="payin",
        option="card", instrument="ins_1", outcome="succeeded", ip="10.0.0.1", country="DE",
        counterparty=None, attached_minutes=-10_000.0) -> Payment:
    """A payment `minutes` after T0 (negative: before)."""
    transfer = kind == "transfer"
    return Payment(
        payment_id=f"pay_{next(_counter)}", user_id=user, kind=kind, amount_minor=amount_minor,
        currency=currency, payment_option="wallet" if transfer else option,
        instrument=None if transfer else instrument, counterparty_user_id=counterparty, ip=ip,
        country=country, created_at=T0 + timedelta(minutes=minutes), outcome=outcome,
        account_created_at=T0 - timedelta(days=100),
        instrument_attached_at=None if transfer else T0 + timedelta(minutes=attached_minutes),
        fraud=False, pattern=None)


def test_windows_are_half_open_and_sum_only_the_payments_currency():
    history = MemoryHistory([
        pay(-24 * 60, amount_minor=1),                      # exactly 24 h before: inside
        pay(-60, amount_minor=10),                          # exactly 1 h before: inside
        pay(-30, amount_minor=100, currency="USD"),         # counted, not summed
        pay(-10, amount_minor=1_000, outcome="declined"),   # exactly 10 min before: inside
        pay(-5, amount_minor=10_000, instrument="ins_2", outcome="declined"),
    ])
    f = features(pay(0, amount_minor=500), history)
    assert (f.user_10m_count, f.user_10m_sum_minor) == (2, 11_000)
    assert (f.user_1h_count, f.user_1h_sum_minor) == (4, 11_010)
    assert (f.user_24h_count, f.user_24h_sum_minor) == (5, 11_011)
    assert (f.instrument_10m_count, f.instrument_10m_sum_minor) == (1, 1_000)
    assert (f.instrument_24h_count, f.instrument_24h_sum_minor) == (4, 1_011)
    assert f.instrument_1h_declines_count == 1
    assert f.user_1h_declines_count == 2
    # The usual amount: succeeded EUR payments only, 1 and 10 -> the lower median is 1.
    assert f.usual_known_flag == 1
    assert f.amount_to_usual_ratio == 500.0
    assert f.amount_to_usual_log == pytest.approx(math.log(500))
    assert f.amount_log == pytest.approx(math.log1p(500))


def test_a_payment_at_the_same_instant_is_not_its_past():
    history = MemoryHistory([pay(0, amount_minor=7)])
    f = features(pay(0), history)
    assert f.user_10m_count == f.instrument_24h_count == 0
    assert f.usual_known_flag == 0 and f.amount_to_usual_ratio == 1.0 and f.amount_to_usual_log == 0.0
    assert f.ip_unseen_flag == 1


def test_usual_amount_is_the_lower_median_of_the_last_fifty_succeeded():
    old = [pay(-10_000 + i, amount_minor=1_000_000) for i in range(20)]
    recent = [pay(-5_000 + i, amount_minor=100 * (i + 1)) for i in range(50)]
    f = features(pay(0, amount_minor=2_500), MemoryHistory(old + recent))
    assert f.amount_to_usual_ratio == 2_500 / 2_500


def test_country_ip_and_instrument_flags():
    history = MemoryHistory([
        pay(-3_000, country="DE", ip="1.1.1.1"),
        pay(-2_000, country="FR", ip="2.2.2.2"),
    ])
    abroad = features(pay(0, country="ES", ip="3.3.3.3", instrument="ins_new", attached_minutes=-90), history)
    assert (abroad.country_not_home_flag, abroad.country_not_last_flag, abroad.country_unseen_flag) == (1, 1, 1)
    assert abroad.ip_unseen_flag == 1
    assert abroad.instrument_new_flag == 1 and abroad.instrument_age_h == pytest.approx(1.5)
    home = features(pay(0, country="DE", ip="2.2.2.2"), history)
    assert (home.country_not_home_flag, home.country_not_last_flag, home.country_unseen_flag) == (0, 1, 0)
    assert home.ip_unseen_flag == 0
    assert home.instrument_new_flag == 0 and home.account_age_days == pytest.approx(100)
    # An instrument attached long ago but never used is new too.
    unused = features(pay(0, instrument="ins_dormant"), history)
    assert unused.instrument_new_flag == 1


def test_first_payment_has_no_country_mismatch():
    f = features(pay(0, country="BR"), MemoryHistory())
    assert (f.country_not_home_flag, f.country_not_last_flag, f.country_unseen_flag) == (0, 0, 0)


def test_one_hot_kind_option_and_hour():
    transfer = features(pay(95, kind="transfer", counterparty="usr_b"), MemoryHistory())
    assert (transfer.kind_payin_flag, transfer.kind_payout_flag, transfer.kind_transfer_flag) == (0, 0, 1)
    assert transfer.option_wallet_flag == 1 and transfer.option_card_flag == 0
    assert transfer.instrument_24h_count == 0 and transfer.instrument_age_h == 0.0
    assert transfer.hour_of_day_utc_h == 13
    payout = features(pay(0, kind="payout", option="bank_account"), MemoryHistory())
    assert (payout.kind_payout_flag, payout.option_bank_account_flag, payout.option_paypal_flag) == (1, 1, 0)


def test_fan_in_counts_transfers_received_by_the_user_and_by_the_counterparty():
    history = MemoryHistory([pay(-60 * i, user=f"usr_{i}", kind="transfer", counterparty="usr_mule")
                             for i in range(5, 0, -1)])
    sender = features(pay(0, user="usr_x", kind="transfer", counterparty="usr_mule"), history)
    assert sender.counterparty_received_24h_count == 5
    payout = features(pay(0, user="usr_mule", kind="payout", option="bank_account"), history)
    assert payout.user_received_24h_count == 5


def test_row_follows_names():
    f = features(pay(0), MemoryHistory())
    assert len(f.row()) == len(NAMES) == len(Features.__struct_fields__)
    assert dict(zip(NAMES, f.row()))["kind_payin_flag"] == 1.0


def test_history_refuses_payments_out_of_order():
    history = MemoryHistory([pay(0)])
    with pytest.raises(ValueError):
        history.add(pay(-1))


@pytest.fixture(scope="module")
def scored():
    return list(offline(generate(users=300, days=30, seed=21)))


def test_features_never_look_into_the_future(scored):
    payments = [p for p, _ in scored]
    cut = len(payments) // 2
    prefix = list(offline(payments[:cut]))
    assert [f for _, f in prefix] == [f for _, f in scored[:cut]]
    # Computed against a history that already holds every payment, each still sees only its past
    # (payments sharing an instant with another are left out: the stream saw those one by one).
    everything = MemoryHistory(payments)
    instants = Counter(p.created_at for p in payments)
    checked = 0
    for payment, f in scored[cut - 100: cut + 100]:
        if instants[payment.created_at] == 1:
            assert features(payment, everything) == f
            checked += 1
    assert checked > 150


def _mean(scored, name, predicate):
    values = [getattr(f, name) for p, f in scored if predicate(p)]
    assert values, name
    return statistics.mean(values)


def legit(kind):
    return lambda p: not p.fraud and p.kind == kind


def of(pattern, kind):
    return lambda p: p.pattern == pattern and p.kind == kind


@pytest.mark.parametrize(("name", "fraud", "legitimate", "factor"), [
    ("user_10m_count", of("card_testing", "payin"), legit("payin"), 20),
    ("user_1h_declines_count", of("card_testing", "payin"), legit("payin"), 20),
    ("instrument_new_flag", of("card_testing", "payin"), legit("payin"), 3),
    ("instrument_1h_declines_count", of("velocity_burst", "payin"), legit("payin"), 20),
    ("instrument_10m_count", of("velocity_burst", "payin"), legit("payin"), 20),
    ("amount_to_usual_log", of("account_takeover", "payout"), legit("payout"), 2),
    ("country_not_home_flag", of("account_takeover", "payout"), legit("payout"), 10),
    ("counterparty_received_24h_count", of("mule_transfer", "transfer"), legit("transfer"), 10),
    ("user_received_24h_count", of("mule_transfer", "payout"), legit("payout"), 10),
])
def test_features_separate_each_pattern_from_legitimate_traffic(scored, name, fraud, legitimate, factor):
    fraud_mean = _mean(scored, name, fraud)
    legit_mean = _mean(scored, name, legitimate)
    assert fraud_mean > max(legit_mean, 0.01) * factor, (fraud_mean, legit_mean)
