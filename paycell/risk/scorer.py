"""Online scoring: a per-process `Scorer` holding the promoted fraud model.

    scorer = Scorer(settings.risk_reload_s)            # once per process (a worker's Context)
    await scorer.refresh(pool_or_conn)                 # before scoring: the pool, or a connection
    probability = scorer.score(features(order, hist))  # float in [0, 1], or None without a model
    scorer.version                                     # the model's version (record it with the verdict)
    probability, version = scorer.score_with_version(features(order, hist))  # both at once

`refresh` asks Postgres which version is promoted at most every `reload_s` seconds (one indexed
single-row query; 0 asks on every call; between checks it returns at once without I/O). When the
promoted version changed it loads that model (skops, trusted types only, its features checked
against paycell.risk.features.NAMES: paycell.risk.model_io) and swaps it in; when none is promoted
any more it drops the model (score -> None). A promoted model this process refuses to load is
logged once (`risk.model.refused`) and not retried until another version is promoted; the model in
force stays meanwhile, so a bad promotion never leaves a worker without the model it had.

`score` is synchronous, CPU only, ~20 µs (paycell.risk.compiled), on the caller's thread.

A database error in `refresh` propagates (the step retries); the model in force is kept. Loading a
new model reads ~0.4 MB and takes ~0.25 s of CPU in a thread, once per process per promotion:
calling `refresh` with the pool before the step's transaction keeps that out of the order's lock.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from paycell.risk import model_io
from paycell.risk.compiled import CompiledModel
from paycell.risk.features import Features
from paycell.store import risk_models

log = structlog.get_logger("paycell.risk.scorer")


class Scorer:
    def __init__(self, reload_s: float, *, clock: Callable[[], float] = time.monotonic):
        if reload_s < 0:
            raise ValueError("reload_s must not be negative")
        self.reload_s = reload_s
        self._clock = clock
        self._checked_at: float | None = None
        self._model: CompiledModel | None = None
        self._version: int | None = None
        self._refused: int | None = None
        self._loading = asyncio.Lock()

    @property
    def version(self) -> int | None:
        """The version of the model `score` uses; None without one."""
        return self._version

    async def refresh(self, conn) -> None:
        """Load the promoted model if it changed since the last check (see the module's docstring).
        `conn`: an asyncpg connection or pool."""
        now = self._clock()
        if self._checked_at is not None and now - self._checked_at < self.reload_s:
            return
        self._checked_at = now
        promoted = await risk_models.promoted_version(conn)
        if promoted is None:
            if self._version is not None:
                log.info("risk.model.unloaded", version=self._version)
            self._model, self._version = None, None
            return
        if promoted == self._version or promoted == self._refused:
            return
        async with self._loading:  # many coroutines may find the new version at once: one loads it
            if promoted == self._version or promoted == self._refused:
                return
            await self._load(conn, promoted)

    async def _load(self, conn, version: int) -> None:
        row = await risk_models.fetch_model(conn, version)
        if row is None:
            return
        started = time.perf_counter()
        try:
            # Parsing and compiling take ~50-200 ms of CPU: off the event loop.
            _, compiled = await asyncio.to_thread(
                model_io.loads, bytes(row["model"]), feature_names=row["feature_names"], format=row["format"],
                digest=bytes(row["model_sha256"]))
        except model_io.ModelRefused as exc:
            self._refused = version
            log.error("risk.model.refused", version=version, reason=str(exc), in_force=self._version)
            return
        self._model, self._version = compiled, version
        log.info("risk.model.loaded", version=version, load_ms=round((time.perf_counter() - started) * 1000, 1),
                 trees=compiled.trees)

    def score_with_version(self, features: Features) -> tuple[float | None, int | None]:
        """The score and the version of the model that gave it ((None, None) without a model): a
        model swapped in by another coroutine between planning and scoring is named correctly."""
        model, version = self._model, self._version
        if model is None:
            return None, None
        return model.score(features.row()), version

    def score(self, features: Features) -> float | None:
        """The fraud probability of one payment's features; None when no model is loaded."""
        model = self._model
        if model is None:
            return None
        return model.score(features.row())
