"""Training the fraud model offline: labelled payments -> features -> a time split -> a fitted
classifier -> its metrics on the held-out slice.

The split is by time, never at random: the model is fitted on the window's first payments and
evaluated on its last `holdout_share` (by created_at), as it will meet payments after its training.
A random split would leak an episode's later payments into training and flatter the model.

The classifier is scikit-learn's GradientBoostingClassifier (100 depth-3 trees on half-samples):
fitting 25,000 payments takes ~3 s on one core, and a fitted model is plain arrays of public
attributes (`estimators_[i, 0].tree_`), which paycell.risk.compiled walks in ~20 µs for one
payment. Both of scikit-learn's own paths cost far more per single row: `predict_proba` spends
~200 µs validating its input, and HistGradientBoostingClassifier walks each tree in its own
OpenMP call (~8 µs a tree, ~500 µs for a model). It runs on one thread (no n_jobs, no OpenMP).

The metrics are those the rules act on: ROC AUC and average precision on the held-out slice, and
precision and recall at the default rules' thresholds (paycell/rules/default.rules: review at
model.score >= 0.8, block at >= 0.97).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import msgspec
import numpy as np
import structlog
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import average_precision_score, roc_auc_score

from paycell.risk.features import NAMES, MemoryHistory, features
from paycell.risk.synthetic import Payment

log = structlog.get_logger("paycell.risk.train")

THRESHOLDS = (0.8, 0.97)  # review and block in paycell/rules/default.rules
PROGRESS_EVERY = 100_000  # payments between two progress lines


class NotEnoughLabels(Exception):
    """The window cannot train or evaluate a model: too few labelled frauds, or a slice with one
    class only. Nothing is stored."""


class AtThreshold(msgspec.Struct, frozen=True, kw_only=True):
    threshold: float
    flagged: int                 # held-out payments scored >= threshold
    precision: float | None      # None when nothing was flagged
    recall: float


class Metrics(msgspec.Struct, frozen=True, kw_only=True):
    """A model's quality on one held-out slice."""

    roc_auc: float
    average_precision: float
    rows: int
    frauds: int
    at_thresholds: tuple[AtThreshold, ...]


class Dataset:
    """Feature rows (NAMES order) with labels, and which rows are held out (created_at >= holdout_from)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, created_at: np.ndarray, *, window_from: datetime,
                 window_to: datetime, holdout_from: datetime):
        self.x, self.y = x, y
        self.holdout = created_at >= _utc64(holdout_from)
        self.window_from, self.window_to, self.holdout_from = window_from, window_to, holdout_from

    @property
    def train_x(self) -> np.ndarray:
        return self.x[~self.holdout]

    @property
    def train_y(self) -> np.ndarray:
        return self.y[~self.holdout]

    @property
    def holdout_x(self) -> np.ndarray:
        return self.x[self.holdout]

    @property
    def holdout_y(self) -> np.ndarray:
        return self.y[self.holdout]

    def counts(self) -> dict[str, int]:
        return {"train_rows": int((~self.holdout).sum()), "train_frauds": int(self.train_y.sum()),
                "holdout_rows": int(self.holdout.sum()), "holdout_frauds": int(self.holdout_y.sum())}


def build_dataset(payments: Iterable[Payment], *, holdout_share: float,
                  window: tuple[datetime, datetime] | None = None,
                  progress: Callable[[int], None] | None = None) -> Dataset:
    """Features of a created_at-ordered stream of labelled payments, each from the payments before
    it (paycell.risk.features), split by time: the last `holdout_share` of the window is held out.
    The window defaults to the first payment's created_at .. just after the last one's."""
    if not 0 < holdout_share < 1:
        raise ValueError("holdout_share must be in (0, 1)")
    history = MemoryHistory()
    rows: list[tuple[float, ...]] = []
    labels: list[bool] = []
    times: list[datetime] = []
    last: datetime | None = None
    for payment in payments:
        if last is not None and payment.created_at < last:
            raise ValueError(f"payments must come in created_at order: {payment.payment_id}")
        last = payment.created_at
        rows.append(features(payment, history).row())
        history.add(payment)
        labels.append(payment.fraud)
        times.append(payment.created_at)
        if progress is not None and len(rows) % PROGRESS_EVERY == 0:
            progress(len(rows))
    if not rows:
        raise NotEnoughLabels("no payment in the window: nothing to train on")
    start, end = window or (times[0], times[-1] + (times[-1] - times[0]) * 1e-6)
    if end <= start:
        raise NotEnoughLabels("the window's payments all share one instant: no time split is possible")
    holdout_from = start + (end - start) * (1 - holdout_share)
    created = np.array([_utc64(t) for t in times], dtype="datetime64[us]")
    return Dataset(np.array(rows, dtype=np.float64), np.array(labels, dtype=np.int8), created,
                   window_from=start, window_to=end, holdout_from=holdout_from)


def _utc64(at: datetime) -> np.datetime64:
    return np.datetime64(at.astimezone(UTC).replace(tzinfo=None), "us")


def check_labels(data: Dataset, frauds_min: int) -> None:
    """Raises NotEnoughLabels unless the window has `frauds_min` labelled frauds and both of its
    slices hold both classes."""
    frauds = int(data.y.sum())
    if frauds < frauds_min:
        raise NotEnoughLabels(f"{frauds} labelled frauds in {len(data.y)} payments, fewer than the "
                              f"{frauds_min} required (PAYCELL_RISK_TRAIN_FRAUDS_MIN)")
    for name, y in (("training", data.train_y), ("held-out", data.holdout_y)):
        if len(y) == 0 or y.min() == y.max():
            raise NotEnoughLabels(f"the {name} slice holds {len(y)} payments of one class only "
                                  f"({int(y.sum())} frauds): it cannot train or evaluate a model")


def new_classifier(seed: int = 0) -> GradientBoostingClassifier:
    return GradientBoostingClassifier(n_estimators=100, max_depth=3, learning_rate=0.1, subsample=0.5,
                                      random_state=seed)


def fit(data: Dataset, *, seed: int = 0, labels: np.ndarray | None = None) -> GradientBoostingClassifier:
    """The classifier fitted on the training slice (`labels` replaces its labels: tests only)."""
    started = time.perf_counter()
    model = new_classifier(seed)
    model.fit(data.train_x, data.train_y if labels is None else labels)
    log.info("risk.train.fitted", rows=len(data.train_y), fit_s=round(time.perf_counter() - started, 3))
    return model


def evaluate(scores: np.ndarray, y: np.ndarray) -> Metrics:
    """Metrics of fraud probabilities `scores` against labels `y` (both classes present)."""
    at = []
    frauds = int(y.sum())
    for threshold in THRESHOLDS:
        flagged = scores >= threshold
        hits = int((flagged & (y == 1)).sum())
        count = int(flagged.sum())
        at.append(AtThreshold(threshold=threshold, flagged=count, precision=hits / count if count else None,
                              recall=hits / frauds))
    auc, ap = float(roc_auc_score(y, scores)), float(average_precision_score(y, scores))
    if math.isnan(auc):
        raise NotEnoughLabels("ROC AUC is undefined on a slice of one class")
    return Metrics(roc_auc=auc, average_precision=ap, rows=len(y), frauds=frauds, at_thresholds=tuple(at))


def holdout_scores(model: GradientBoostingClassifier, data: Dataset) -> np.ndarray:
    """The model's fraud probability for each held-out row (scikit-learn's batch path)."""
    return model.predict_proba(data.holdout_x)[:, 1]


def feature_names() -> list[str]:
    return list(NAMES)
