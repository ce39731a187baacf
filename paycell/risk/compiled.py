"""One payment's fraud probability from a fitted GradientBoostingClassifier, in ~20 µs.

scikit-learn's `predict_proba` validates its input on every call (~200 µs for one row on the
project's machines), which the screen step would pay per payment. This module reads the fitted
model's public arrays once (`estimators_[i, 0].tree_`: feature, threshold, children, value) into
padded matrices, one row per tree, and walks all trees at once, one numpy step per tree level.

It computes what scikit-learn computes: the input cast to float32 as the trees were grown on, a
node goes left when `x[feature] <= threshold`, raw score = the model's constant start (its prior's
log-odds) + learning_rate x the sum of the leaves reached, probability = the logistic of it.
`CompiledModel(model)` checks that on probe rows built from the model's own split thresholds (both
sides of each) against `predict_proba`, and refuses a model on which the two disagree.
"""
from __future__ import annotations

import math

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier

PROBE_ROWS = 256
# Largest differences accepted on the probe rows. The trees' sum runs in another order than
# scikit-learn's, and leaf values of a boosted model can be large and cancel (~1e6), so the raw
# scores differ by rounding up to ~1e-6; an init estimator that is not a constant differs by far more.
START_SPREAD_MAX = 1e-5   # raw score (log-odds)
AGREEMENT_MAX = 1e-6      # probability


class CompileError(Exception):
    """The model is not one this module can evaluate exactly."""


class CompiledModel:
    def __init__(self, model: GradientBoostingClassifier):
        if not isinstance(model, GradientBoostingClassifier) or list(model.classes_) != [0, 1]:
            raise CompileError("expected a binary GradientBoostingClassifier with classes [0, 1]")
        if model.estimators_.shape[1] != 1:
            raise CompileError("expected one tree per stage (binary log loss)")
        trees = [estimator.tree_ for estimator in model.estimators_[:, 0]]
        width = max(t.node_count for t in trees)
        self.depth = max(t.max_depth for t in trees)
        self.trees = len(trees)
        self.features_in = int(model.n_features_in_)
        feature = np.zeros((len(trees), width), dtype=np.intp)
        threshold = np.full((len(trees), width), np.inf)
        left = np.tile(np.arange(width, dtype=np.intp), (len(trees), 1))
        right = left.copy()
        value = np.zeros((len(trees), width))
        for i, tree in enumerate(trees):
            n = tree.node_count
            leaf = tree.children_left[:n] == -1
            # A leaf points at itself and compares x[0] <= inf: walking past it stays on it.
            feature[i, :n] = np.where(leaf, 0, tree.feature[:n])
            threshold[i, :n] = np.where(leaf, np.inf, tree.threshold[:n])
            left[i, :n] = np.where(leaf, np.arange(n), tree.children_left[:n])
            right[i, :n] = np.where(leaf, np.arange(n), tree.children_right[:n])
            value[i, :n] = tree.value[:n, 0, 0]
        # Flattened, so one fancy index per level reads every tree's current node.
        self._base = np.arange(len(trees), dtype=np.intp) * width
        self._feature, self._threshold = feature.ravel(), threshold.ravel()
        self._left, self._right, self._value = left.ravel(), right.ravel(), value.ravel()
        self._rate = float(model.learning_rate)
        probe = _probe_rows(model, trees)
        # The constant start: what decision_function adds to the trees' sum (the prior's log-odds).
        starts = model.decision_function(probe) - self._rate * np.array([self._trees_sum(r) for r in probe])
        if np.ptp(starts) > START_SPREAD_MAX:
            raise CompileError("the model's start is not a constant: an init estimator this module cannot read")
        self._start = float(np.median(starts))
        expected = model.predict_proba(probe)[:, 1]
        got = np.array([self.score(r) for r in probe])
        worst = float(np.max(np.abs(expected - got)))
        if worst > AGREEMENT_MAX:
            raise CompileError(f"the compiled model disagrees with predict_proba by {worst:.3g} on its probe rows")

    def _trees_sum(self, row: np.ndarray) -> float:
        x = np.asarray(row, dtype=np.float32).astype(np.float64)
        node = self._base.copy()
        for _ in range(self.depth):
            go_left = x[self._feature[node]] <= self._threshold[node]
            node = self._base + np.where(go_left, self._left[node], self._right[node])
        return float(self._value[node].sum())

    def score(self, row) -> float:
        """The fraud probability of one feature row (a sequence of floats in the model's order)."""
        raw = self._start + self._rate * self._trees_sum(row)
        if raw >= 0:
            return 1.0 / (1.0 + math.exp(-raw))
        odds = math.exp(raw)  # the same, without overflowing for a very negative raw score
        return odds / (1.0 + odds)


def _probe_rows(model: GradientBoostingClassifier, trees) -> np.ndarray:
    """Rows whose values sit on either side of the model's own split thresholds, so the probe
    follows many different paths (and both branches of every split it reaches)."""
    rng = np.random.default_rng(0)
    width = int(model.n_features_in_)
    cuts: list[list[float]] = [[] for _ in range(width)]
    for tree in trees:
        inner = tree.children_left != -1
        for f, t in zip(tree.feature[inner], tree.threshold[inner]):
            cuts[f].append(float(t))
    rows = np.zeros((PROBE_ROWS, width))
    for f in range(width):
        if not cuts[f]:
            continue
        chosen = rng.choice(np.array(cuts[f]), size=PROBE_ROWS)
        spread = np.maximum(np.abs(chosen), 1.0) * 0.05
        rows[:, f] = chosen + rng.choice([-1.0, 1.0], size=PROBE_ROWS) * rng.uniform(0.01, 1.0, PROBE_ROWS) * spread
    return rows
