"""The fraud model offline: the time split, the held-out quality on synthetic data, the compiled
evaluator against scikit-learn, safe (de)serialisation, and refusing what cannot train or load."""
from __future__ import annotations

import os
from datetime import timedelta

import numpy as np
import pytest
import skops.io
from sklearn.preprocessing import FunctionTransformer

from paycell.config import SettingsError, load
from paycell.risk import model_io, train
from paycell.risk.compiled import CompiledModel
from paycell.risk.features import NAMES
from paycell.risk.synthetic import generate

from tests.risk.conftest import DAYS, SEED, USERS


def test_the_split_is_by_time_and_both_slices_hold_both_classes(synthetic_data):
    data = synthetic_data
    span = data.window_to - data.window_from
    assert data.holdout_from == data.window_from + span * 0.8
    counts = data.counts()
    assert counts["holdout_rows"] + counts["train_rows"] == len(data.y)
    assert 0.15 < counts["holdout_rows"] / len(data.y) < 0.25
    assert counts["holdout_frauds"] >= 30 and counts["train_frauds"] >= 300
    train.check_labels(data, 30)
    # Every held-out payment comes after every training payment.
    payments = list(generate(users=USERS, days=DAYS, seed=SEED))
    held = [p.created_at >= data.holdout_from for p in payments]
    assert held == list(data.holdout)
    assert held.index(True) == len(held) - held[::-1].index(False)  # one boundary: False... then True...


def test_the_model_beats_the_floor_on_held_out_synthetic_payments(synthetic_data, synthetic_model):
    metrics = train.evaluate(train.holdout_scores(synthetic_model, synthetic_data), synthetic_data.holdout_y)
    assert metrics.roc_auc >= 0.9, metrics
    assert metrics.average_precision >= 0.5, metrics
    review, block = metrics.at_thresholds
    assert (review.threshold, block.threshold) == (0.8, 0.97)
    assert review.flagged >= block.flagged and review.recall >= block.recall
    assert review.precision is not None and review.precision >= 0.8, metrics


def test_metrics_at_thresholds_count_what_they_say():
    scores = np.array([0.99, 0.9, 0.85, 0.5, 0.1, 0.98])
    y = np.array([1, 1, 0, 1, 0, 0], dtype=np.int8)
    metrics = train.evaluate(scores, y)
    review, block = metrics.at_thresholds
    assert (review.flagged, review.precision, review.recall) == (4, 2 / 4, 2 / 3)
    assert (block.flagged, block.precision, block.recall) == (2, 1 / 2, 1 / 3)
    assert metrics.rows == 6 and metrics.frauds == 3
    nothing = train.evaluate(np.array([0.1, 0.2]), np.array([0, 1], dtype=np.int8))
    assert nothing.at_thresholds[0].precision is None and nothing.roc_auc == 1.0


def test_the_compiled_model_scores_exactly_as_scikit_learn(synthetic_data, synthetic_model):
    compiled = CompiledModel(synthetic_model)
    rows = synthetic_data.holdout_x
    expected = synthetic_model.predict_proba(rows)[:, 1]
    got = np.array([compiled.score(r) for r in rows])
    assert np.max(np.abs(got - expected)) < 1e-9
    # The extremes saturate without overflowing.
    assert 0.0 <= compiled.score(np.full(len(NAMES), 1e30)) <= 1.0
    assert 0.0 <= compiled.score(np.full(len(NAMES), -1e30)) <= 1.0


def test_a_model_survives_skops_with_its_scores(synthetic_data, synthetic_model):
    blob = model_io.dumps(synthetic_model)
    model, compiled = model_io.loads(blob, feature_names=NAMES, digest=model_io.sha256(blob))
    rows = synthetic_data.holdout_x[:500]
    assert np.array_equal(model.predict_proba(rows), synthetic_model.predict_proba(rows))
    assert compiled.trees == 100


def test_a_model_with_other_feature_names_is_refused(synthetic_model):
    blob = model_io.dumps(synthetic_model)
    with pytest.raises(model_io.ModelRefused, match="features differ"):
        model_io.loads(blob, feature_names=list(reversed(NAMES)))
    with pytest.raises(model_io.ModelRefused, match="missing"):
        model_io.loads(blob, feature_names=list(NAMES[:-1]) + ["shoe_size"])
    with pytest.raises(model_io.ModelRefused, match="SHA-256"):
        model_io.loads(blob, feature_names=NAMES, digest=b"\0" * 32)
    with pytest.raises(model_io.ModelRefused, match="format"):
        model_io.loads(blob, feature_names=NAMES, format="pickle")


def test_a_blob_naming_untrusted_types_is_refused_before_it_is_built():
    blob = skops.io.dumps(FunctionTransformer(func=os.system))
    assert any("system" in t for t in skops.io.get_untrusted_types(data=blob))
    with pytest.raises(model_io.ModelRefused, match="does not trust"):
        model_io.loads(blob, feature_names=NAMES)
    with pytest.raises(model_io.ModelRefused, match="not a readable skops file"):
        model_io.loads(b"\x80\x04K\x01.", feature_names=NAMES)  # a pickle


def test_too_few_frauds_or_one_class_cannot_train():
    payments = list(generate(users=300, days=10, seed=3))
    data = train.build_dataset(payments, holdout_share=0.2)
    frauds = int(data.y.sum())
    with pytest.raises(train.NotEnoughLabels, match=f"{frauds} labelled frauds .* fewer than the {frauds + 1}"):
        train.check_labels(data, frauds + 1)
    honest = [p for p in payments if not p.fraud]
    with pytest.raises(train.NotEnoughLabels, match="0 labelled frauds"):
        train.check_labels(train.build_dataset(honest, holdout_share=0.2), 1)
    # Frauds only before the held-out slice: nothing to evaluate on.
    early = train.build_dataset([p for p in payments if not p.fraud or p.created_at < payments[0].created_at
                                 + timedelta(days=5)], holdout_share=0.2)
    with pytest.raises(train.NotEnoughLabels, match="held-out slice"):
        train.check_labels(early, 1)
    with pytest.raises(train.NotEnoughLabels, match="no payment"):
        train.build_dataset([], holdout_share=0.2)


def test_payments_out_of_order_are_refused():
    payments = list(generate(users=50, days=3, seed=1))
    with pytest.raises(ValueError, match="created_at order"):
        train.build_dataset(list(reversed(payments)), holdout_share=0.2)


@pytest.mark.parametrize("var, value", [("PAYCELL_RISK_MODEL_AUC_MIN", "0.3"), ("PAYCELL_RISK_MODEL_AUC_MIN", "1.5"),
                                        ("PAYCELL_RISK_RELOAD_S", "-1"), ("PAYCELL_RISK_TRAIN_HOLDOUT_SHARE", "0.9"),
                                        ("PAYCELL_RISK_TRAIN_FRAUDS_MIN", "0"),
                                        ("PAYCELL_RISK_TRAIN_WINDOW_DAYS", "0")])
def test_model_settings_are_validated(var, value):
    with pytest.raises(SettingsError, match=var):
        load({var: value})
    assert load({"PAYCELL_RISK_RELOAD_S": "0"}).risk_reload_s == 0
