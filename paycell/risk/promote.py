"""Storing a trained model and deciding whether it replaces the promoted one.

The candidate is stored first (its own transaction: a trained model is never lost to a failed
decision). The decision is a second transaction holding the promotion lock and the promoted
model's row lock (paycell.store.risk_models.lock_for_decision), so two trainers finishing at once
decide one after the other and never both promote:

- below PAYCELL_RISK_MODEL_AUC_MIN (ROC AUC on its held-out slice): rejected;
- else, when a model is promoted, that model is scored on the candidate's held-out slice (the same
  payments, the same labels) and the candidate is promoted only if its ROC AUC is at least the
  promoted model's there; otherwise rejected, the note giving both numbers. A promoted model this
  worker cannot load (its features differ from today's) cannot be compared and is replaced;
- promoting retires the previous model in the same transaction.
"""
from __future__ import annotations

import msgspec
import structlog
from sklearn.metrics import roc_auc_score

from paycell.config import Settings
from paycell.risk import model_io, train
from paycell.store import risk_models

log = structlog.get_logger("paycell.risk.promote")


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    status: str                     # promoted | rejected
    note: str
    roc_auc: float                  # the candidate's, on its held-out slice
    previous_version: int | None    # the model promoted when the decision was taken
    previous_roc_auc: float | None  # that model's ROC AUC on the candidate's held-out slice


class Candidate(msgspec.Struct, frozen=True, kw_only=True):
    """A fitted model, its evaluation and where its data came from, ready to store."""

    blob: bytes
    metrics: train.Metrics
    counts: dict[str, int]
    source: str                     # synthetic | history
    source_detail: dict
    fit_s: float


async def store_and_decide(pool, candidate: Candidate, data: train.Dataset, settings: Settings, *,
                           trained_by: str) -> Decision:
    metrics = {**msgspec.to_builtins(candidate.metrics), **candidate.counts, "fit_s": round(candidate.fit_s, 3)}
    async with pool.acquire() as conn:
        async with conn.transaction():
            version = await risk_models.insert_candidate(
                conn, trained_by=trained_by, source=candidate.source, source_detail=candidate.source_detail,
                window_from=data.window_from, window_to=data.window_to, holdout_from=data.holdout_from,
                feature_names=train.feature_names(), metrics=metrics, format=model_io.FORMAT, model=candidate.blob,
                model_sha256=model_io.sha256(candidate.blob))
        log.info("risk.model.stored", version=version, roc_auc=round(candidate.metrics.roc_auc, 4))
        async with conn.transaction():
            promoted = await risk_models.lock_for_decision(conn)
            status = await risk_models.lock_candidate(conn, version)
            if status != "candidate":
                raise RuntimeError(f"risk model {version} is {status}, not a candidate")
            decision = _decide(version, candidate.metrics.roc_auc, promoted, data, settings)
            if decision.status == "promoted":
                await risk_models.promote(conn, version, retire=decision.previous_version, note=decision.note)
            else:
                await risk_models.reject(conn, version, note=decision.note)
    log.info(f"risk.model.{decision.status}", version=version, note=decision.note)
    return decision


def _decide(version: int, auc: float, promoted, data: train.Dataset, settings: Settings) -> Decision:
    floor = settings.risk_model_auc_min
    previous = promoted["version"] if promoted is not None else None
    if auc < floor:
        return Decision(version=version, status="rejected", roc_auc=auc, previous_version=previous,
                        previous_roc_auc=None,
                        note=f"ROC AUC {auc:.4f} on its held-out slice is below PAYCELL_RISK_MODEL_AUC_MIN={floor}")
    if promoted is None:
        return Decision(version=version, status="promoted", roc_auc=auc, previous_version=None, previous_roc_auc=None,
                        note=f"ROC AUC {auc:.4f} on its held-out slice (>= {floor}); no model was promoted")
    try:
        model, _ = model_io.loads(promoted["model"], feature_names=promoted["feature_names"],
                                  format=promoted["format"], digest=bytes(promoted["model_sha256"]))
    except model_io.ModelRefused as exc:
        return Decision(version=version, status="promoted", roc_auc=auc, previous_version=previous,
                        previous_roc_auc=None,
                        note=f"ROC AUC {auc:.4f} on its held-out slice (>= {floor}); the promoted v{previous} "
                             f"cannot be scored here ({exc}) and is retired")
    previous_auc = float(roc_auc_score(data.holdout_y, train.holdout_scores(model, data)))
    if auc >= previous_auc:
        return Decision(version=version, status="promoted", roc_auc=auc, previous_version=previous,
                        previous_roc_auc=previous_auc,
                        note=f"ROC AUC {auc:.4f} on its held-out slice >= v{previous}'s {previous_auc:.4f} "
                             f"on the same slice")
    return Decision(version=version, status="rejected", roc_auc=auc, previous_version=previous,
                    previous_roc_auc=previous_auc,
                    note=f"ROC AUC {auc:.4f} on its held-out slice < the promoted v{previous}'s "
                         f"{previous_auc:.4f} on the same slice")
