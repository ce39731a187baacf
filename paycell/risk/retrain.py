"""One training run end to end, shared by `paycell risk train` and the weekly actor: labelled
payments (synthetic, or the platform's history) -> dataset -> fit -> evaluate -> store -> decide.

The CPU-bound part (features, fitting, evaluation) runs in a thread (`asyncio.to_thread`), so a
worker's event loop keeps serving its other coroutines while a model trains. Progress lines are
structlog events `risk.train.*`.
"""
from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Iterable

import structlog

from paycell.config import Settings
from paycell.risk import history, model_io, synthetic, train
from paycell.risk.promote import Candidate, Decision, store_and_decide

log = structlog.get_logger("paycell.risk.retrain")


def _fit_and_evaluate(payments: Iterable[synthetic.Payment], settings: Settings, *, source: str,
                      source_detail: dict, window: tuple[datetime.datetime, datetime.datetime] | None,
                      seed: int) -> tuple[Candidate, train.Dataset]:
    def progress(count: int) -> None:
        log.info("risk.train.features", payments=count)

    data = train.build_dataset(payments, holdout_share=settings.risk_train_holdout_share, window=window,
                               progress=progress)
    counts = data.counts()
    log.info("risk.train.dataset", **counts, window_from=data.window_from.isoformat(),
             window_to=data.window_to.isoformat(), holdout_from=data.holdout_from.isoformat())
    train.check_labels(data, settings.risk_train_frauds_min)
    started = time.perf_counter()
    model = train.fit(data, seed=seed)
    fit_s = time.perf_counter() - started
    metrics = train.evaluate(train.holdout_scores(model, data), data.holdout_y)
    log.info("risk.train.evaluated", roc_auc=round(metrics.roc_auc, 4),
             average_precision=round(metrics.average_precision, 4))
    return Candidate(blob=model_io.dumps(model), metrics=metrics, counts=counts, source=source,
                     source_detail=source_detail, fit_s=fit_s), data


async def train_synthetic(pool, settings: Settings, *, users: int, days: int, seed: int,
                          trained_by: str) -> tuple[Decision, Candidate]:
    """Train on paycell.risk.synthetic's payments of `users` users over `days` days (seeded)."""
    log.info("risk.train.started", source="synthetic", users=users, days=days, seed=seed)
    detail = {"users": users, "days": days, "seed": seed}
    candidate, data = await asyncio.to_thread(
        _fit_and_evaluate, synthetic.generate(users=users, days=days, seed=seed), settings, source="synthetic",
        source_detail=detail, window=None, seed=seed)
    return await store_and_decide(pool, candidate, data, settings, trained_by=trained_by), candidate


async def train_history(pool, settings: Settings, *, trained_by: str,
                        now: datetime.datetime | None = None) -> tuple[Decision, Candidate]:
    """Train on the platform's payments of the last PAYCELL_RISK_TRAIN_WINDOW_DAYS.
    Raises train.NotEnoughLabels (nothing stored) when they cannot train a model."""
    until = now or datetime.datetime.now(datetime.UTC)
    since = until - datetime.timedelta(days=settings.risk_train_window_days)
    log.info("risk.train.started", source="history", since=since.isoformat(), until=until.isoformat())

    def progress(count: int) -> None:
        log.info("risk.train.read", payments=count)

    async with pool.acquire() as conn:
        payments = await history.load_payments(conn, since, until,
                                               statement_timeout_ms=settings.risk_train_statement_timeout_ms,
                                               progress=progress, payments_max=settings.risk_train_payments_max)
    log.info("risk.train.read", payments=len(payments), payments_max=settings.risk_train_payments_max, done=True)
    detail = {"window_days": settings.risk_train_window_days, "payments": len(payments)}
    # A platform younger than the window, or a window of more than risk_train_payments_max payments:
    # the window starts with its first payment kept (else the held-out slice, the window's last
    # share, could hold all of them).
    start = max(since, payments[0].created_at) if payments else since
    candidate, data = await asyncio.to_thread(
        _fit_and_evaluate, payments, settings, source="history", source_detail=detail, window=(start, until), seed=0)
    return await store_and_decide(pool, candidate, data, settings, trained_by=trained_by), candidate


async def weekly(pool, settings: Settings) -> Decision | None:
    """The weekly actor's run (paycell.actors.train_model): train on history as `actor`. Too few
    labelled frauds (or a slice of one class) stops it before anything is stored, logged as
    `risk.train.skipped` with the reason; returns None then."""
    try:
        decision, candidate = await train_history(pool, settings, trained_by="actor")
    except train.NotEnoughLabels as exc:
        log.warning("risk.train.skipped", reason=str(exc))
        return None
    log.info("risk.train.done", version=decision.version, status=decision.status, note=decision.note,
             roc_auc=round(candidate.metrics.roc_auc, 4))
    return decision
