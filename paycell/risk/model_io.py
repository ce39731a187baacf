"""A fitted model to bytes and back, safely: skops, never pickle.

A model is stored in Postgres (risk_model.model) and loaded by every worker, so loading must not
run code chosen by whoever could write that column. skops.io stores the object tree as a schema
and arrays, and its loader builds only types it is told to trust: those it trusts by default
(scikit-learn estimators, numpy arrays and such) and the list below, nothing more. A blob naming
any other type is refused before it is built; `trusted=True` is never used.

Loading also checks what the worker will rely on: the stored feature names equal
paycell.risk.features.NAMES (a model trained on other features would score garbage), the SHA-256
of the bytes, the format, and that paycell.risk.compiled can evaluate the model exactly.
"""
from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Sequence

import skops.io
from sklearn.ensemble import GradientBoostingClassifier

from paycell.risk.compiled import CompiledModel, CompileError
from paycell.risk.features import NAMES

FORMAT = "skops"
# Types skops does not trust by default that a GradientBoostingClassifier holds: its trees'
# arrays (sklearn.tree._tree.Tree is a Cython class skops rebuilds from its state, not code).
TRUSTED_TYPES: tuple[str, ...] = ("sklearn.tree._tree.Tree",)


class ModelRefused(Exception):
    """A stored model this worker will not load (untrusted types, other features, corrupt bytes)."""


def dumps(model: GradientBoostingClassifier) -> bytes:
    return skops.io.dumps(model, compression=zipfile.ZIP_DEFLATED)


def sha256(blob: bytes) -> bytes:
    return hashlib.sha256(blob).digest()


def loads(blob: bytes, *, feature_names: Sequence[str], format: str = FORMAT,
          digest: bytes | None = None) -> tuple[GradientBoostingClassifier, CompiledModel]:
    """The model and its compiled form; raises ModelRefused when it must not be used here."""
    if format != FORMAT:
        raise ModelRefused(f"format {format!r} is not {FORMAT!r}")
    if list(feature_names) != list(NAMES):
        missing = sorted(set(NAMES) - set(feature_names))
        extra = sorted(set(feature_names) - set(NAMES))
        raise ModelRefused(f"its features differ from this worker's ({len(feature_names)} vs {len(NAMES)}; "
                           f"missing {missing[:5]}, unknown {extra[:5]}"
                           + (", same names in another order" if not missing and not extra else "") + ")")
    if digest is not None and sha256(blob) != digest:
        raise ModelRefused("its bytes do not match their stored SHA-256")
    try:
        untrusted = skops.io.get_untrusted_types(data=blob)
    except Exception as exc:  # not a skops file at all: a zip or schema error of any kind
        raise ModelRefused(f"not a readable skops file: {exc}") from None
    refused = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if refused:
        raise ModelRefused(f"it names types this worker does not trust: {refused[:5]}")
    try:
        model = skops.io.loads(blob, trusted=list(TRUSTED_TYPES))
    except Exception as exc:
        raise ModelRefused(f"skops could not load it: {exc}") from None
    if not isinstance(model, GradientBoostingClassifier):
        raise ModelRefused(f"it holds a {type(model).__name__}, not a GradientBoostingClassifier")
    if int(model.n_features_in_) != len(NAMES):
        raise ModelRefused(f"it was fitted on {model.n_features_in_} columns, not {len(NAMES)}")
    try:
        return model, CompiledModel(model)
    except CompileError as exc:
        raise ModelRefused(str(exc)) from None
