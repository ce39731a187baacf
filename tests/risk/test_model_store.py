"""The fraud model in Postgres: promotion only when no worse on the same held-out slice, safe
storage (skops round trip, refused features), hot reload in a running process, the database's own
guards, and the training entry points (history, CLI, the weekly actor) refusing too few labels."""
from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
import subprocess
import sys

import asyncpg
import dramatiq
import msgspec
import numpy as np
import pytest
from structlog.testing import capture_logs

from paycell.actors.broker import STEP_QUEUES
from paycell.risk import model_io, retrain, train
from paycell.risk.features import NAMES, Features
from paycell.risk.promote import Candidate, store_and_decide
from paycell.risk.scorer import Scorer
from paycell.store import risk_models
from tests.helpers import new_order, new_user, wait_until
from tests.risk.conftest import DAYS, SEED, USERS

PAYCELL = os.path.join(os.path.dirname(sys.executable), "paycell")
# The weaker model: the same holdout, fitted on the training slice's first rows only (its ROC AUC,
# ~0.95, clears the 0.9 floor but not the full model's ~0.99).
WEAK_ROWS = 8_000


def candidate_of(model, data: train.Dataset, **detail) -> Candidate:
    return Candidate(blob=model_io.dumps(model), counts=data.counts(), source="synthetic",
                     source_detail={"users": USERS, "days": DAYS, "seed": SEED, **detail}, fit_s=0.0,
                     metrics=train.evaluate(train.holdout_scores(model, data), data.holdout_y))


async def retire_promoted(pool) -> None:
    """No model promoted (promoted -> retired is a move the app may make)."""
    await pool.execute("UPDATE risk_model SET status = 'retired' WHERE status = 'promoted'")


async def statuses(pool, *versions: int) -> list[str]:
    rows = await pool.fetch("SELECT version, status FROM risk_model WHERE version = ANY($1::bigint[])", list(versions))
    found = {r["version"]: r["status"] for r in rows}
    return [found[v] for v in versions]


@pytest.fixture(scope="module")
def good(synthetic_data, synthetic_model) -> Candidate:
    return candidate_of(synthetic_model, synthetic_data)


async def test_a_worse_model_is_not_promoted_and_the_promoted_one_stays(pool, settings, synthetic_data, good):
    await retire_promoted(pool)
    first = await store_and_decide(pool, good, synthetic_data, settings, trained_by="test")
    assert first.status == "promoted" and first.previous_version is None, first
    assert first.roc_auc >= 0.9

    weak_model = train.new_classifier(SEED).fit(synthetic_data.train_x[:WEAK_ROWS], synthetic_data.train_y[:WEAK_ROWS])
    weak = candidate_of(weak_model, synthetic_data, rows=WEAK_ROWS)
    assert settings.risk_model_auc_min <= weak.metrics.roc_auc < good.metrics.roc_auc  # the case under test
    second = await store_and_decide(pool, weak, synthetic_data, settings, trained_by="test")
    assert second.status == "rejected" and second.previous_version == first.version, second
    assert second.previous_roc_auc == pytest.approx(good.metrics.roc_auc)  # re-scored on the same slice
    assert f"{weak.metrics.roc_auc:.4f}" in second.note and f"{good.metrics.roc_auc:.4f}" in second.note

    labels = np.random.default_rng(1).permutation(synthetic_data.train_y)
    shuffled = candidate_of(train.fit(synthetic_data, seed=SEED, labels=labels), synthetic_data, shuffled_labels=True)
    third = await store_and_decide(pool, shuffled, synthetic_data, settings, trained_by="test")
    assert third.status == "rejected" and "PAYCELL_RISK_MODEL_AUC_MIN" in third.note, third

    async with pool.acquire() as conn:
        assert await risk_models.promoted_version(conn) == first.version
        row = await risk_models.get(conn, second.version)
    assert await statuses(pool, first.version, second.version, third.version) == ["promoted", "rejected", "rejected"]
    assert row["note"] == second.note and row["metrics"]["roc_auc"] == pytest.approx(weak.metrics.roc_auc)
    assert row["feature_names"] == list(NAMES) and row["format"] == "skops"
    assert row["window_from"] == synthetic_data.window_from and row["holdout_from"] == synthetic_data.holdout_from

    # No worse (the same model again) is promoted, and retires the one before.
    fourth = await store_and_decide(pool, good, synthetic_data, settings, trained_by="test")
    assert fourth.status == "promoted" and fourth.previous_version == first.version
    assert fourth.previous_roc_auc == pytest.approx(fourth.roc_auc)
    assert await statuses(pool, first.version, fourth.version) == ["retired", "promoted"]


async def test_two_trainers_at_once_never_both_promote(pool, settings, synthetic_data, good):
    await retire_promoted(pool)
    a, b = await asyncio.gather(*(store_and_decide(pool, good, synthetic_data, settings, trained_by=name)
                                  for name in ("trainer-a", "trainer-b")))
    first, second = sorted((a, b), key=lambda d: d.previous_version or 0)
    # They decided one after the other: the second compared itself with the first (equal: promoted).
    assert first.previous_version is None and second.previous_version == first.version
    assert await pool.fetchval("SELECT count(*) FROM risk_model WHERE status = 'promoted'") == 1
    assert await statuses(pool, first.version, second.version) == ["retired", "promoted"]


async def test_a_model_round_trips_through_postgres(pool, settings, synthetic_data, synthetic_model, good):
    await retire_promoted(pool)
    decision = await store_and_decide(pool, good, synthetic_data, settings, trained_by="test")
    async with pool.acquire() as conn:
        row = await risk_models.fetch_model(conn, decision.version)
    assert bytes(row["model"]) == good.blob
    model, compiled = model_io.loads(bytes(row["model"]), feature_names=row["feature_names"], format=row["format"],
                                     digest=bytes(row["model_sha256"]))
    rows = synthetic_data.holdout_x
    assert np.array_equal(model.predict_proba(rows), synthetic_model.predict_proba(rows))
    assert compiled.score(rows[0]) == pytest.approx(synthetic_model.predict_proba(rows[:1])[0, 1], abs=1e-9)


async def test_a_scorer_picks_up_a_newly_promoted_model_without_a_restart(pool, settings, synthetic_data, good):
    await retire_promoted(pool)
    scorer = Scorer(0)
    async with pool.acquire() as conn:
        await scorer.refresh(conn)
        assert scorer.version is None
        first = await store_and_decide(pool, good, synthetic_data, settings, trained_by="test")
        await scorer.refresh(conn)
        assert scorer.version == first.version
        row = synthetic_data.holdout_x[0]
        expected = model_io.loads(good.blob, feature_names=NAMES)[1].score(row)

        second = await _stored(conn, good)
        async with conn.transaction():
            await risk_models.lock_for_decision(conn)
            await risk_models.promote(conn, second, retire=first.version, note="test")
        await scorer.refresh(conn)
        assert scorer.version == second
        assert scorer._model is not None and scorer._model.score(row) == expected

        await retire_promoted(pool)
        await scorer.refresh(conn)
        assert scorer.version is None


async def test_the_scorer_asks_at_most_every_reload_period(pool, settings, synthetic_data, good):
    await retire_promoted(pool)
    now = [1000.0]
    scorer = Scorer(5.0, clock=lambda: now[0])
    await scorer.refresh(pool)  # the pool serves as well as a connection
    assert scorer.version is None
    decision = await store_and_decide(pool, good, synthetic_data, settings, trained_by="test")
    now[0] += 4.9
    await scorer.refresh(pool)
    assert scorer.version is None  # within the period: no query
    now[0] += 0.1
    await scorer.refresh(pool)
    assert scorer.version == decision.version
    assert scorer.score(_features(synthetic_data)) == pytest.approx(
        train.holdout_scores(model_io.loads(good.blob, feature_names=NAMES)[0], synthetic_data)[0], abs=1e-9)


async def test_a_scorer_refuses_a_model_of_other_features_and_keeps_the_one_in_force(pool, settings, synthetic_data,
                                                                                     good):
    await retire_promoted(pool)
    first = await store_and_decide(pool, good, synthetic_data, settings, trained_by="test")
    scorer = Scorer(0)
    async with pool.acquire() as conn:
        await scorer.refresh(conn)
        assert scorer.version == first.version
        other = await _stored(conn, good, feature_names=list(reversed(NAMES)))
        async with conn.transaction():
            await risk_models.lock_for_decision(conn)
            await risk_models.promote(conn, other, retire=first.version, note="test: features reordered")
        with capture_logs() as logs:
            await scorer.refresh(conn)
            await scorer.refresh(conn)  # refused once, not loaded again
        assert scorer.version == first.version
        refused = [e for e in logs if e["event"] == "risk.model.refused"]
        assert len(refused) == 1 and refused[0]["version"] == other and "features differ" in refused[0]["reason"]

    # The next trainer cannot score the refused model on its slice: it replaces it, saying why.
    replaced = await store_and_decide(pool, good, synthetic_data, settings, trained_by="test")
    assert replaced.status == "promoted" and replaced.previous_version == other
    assert "cannot be scored here" in replaced.note


def _features(data: train.Dataset) -> Features:
    """The first held-out row as the Features struct the screen step would hand over."""
    features = msgspec.convert(dict(zip(NAMES, data.holdout_x[0].tolist())), Features, strict=False)
    assert features.row() == tuple(data.holdout_x[0])
    return features


async def _stored(conn, candidate: Candidate, *, feature_names=NAMES) -> int:
    return await risk_models.insert_candidate(
        conn, trained_by="test", source="synthetic", source_detail=candidate.source_detail,
        window_from=train_window()[0], window_to=train_window()[1], holdout_from=train_window()[2],
        feature_names=feature_names, metrics=msgspec.to_builtins(candidate.metrics), format="skops",
        model=candidate.blob, model_sha256=model_io.sha256(candidate.blob))


def train_window():
    return datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 31, tzinfo=UTC), datetime(2026, 1, 25, tzinfo=UTC)


async def test_the_database_guards_the_models(pool, settings, synthetic_data, good):
    await retire_promoted(pool)
    decision = await store_and_decide(pool, good, synthetic_data, settings, trained_by="test")
    async with pool.acquire() as conn:
        other = await _stored(conn, good)
        with pytest.raises(asyncpg.UniqueViolationError):  # a second promoted model
            await conn.execute("UPDATE risk_model SET status = 'promoted', promoted_at = now() WHERE version = $1",
                               other)
        with pytest.raises(asyncpg.CheckViolationError, match="not a move"):  # candidate -> retired
            await conn.execute("UPDATE risk_model SET status = 'retired' WHERE version = $1", other)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):  # the model itself is frozen
            await conn.execute("UPDATE risk_model SET model = '\\x00' WHERE version = $1", decision.version)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM risk_model WHERE version = $1", other)
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE risk_model SET status = 'promoted' WHERE version = $1", other)  # no promoted_at
    admin = await asyncpg.connect(settings.admin_database_url)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):  # not even the owner
            await admin.execute("DELETE FROM risk_model WHERE version = $1", other)
    finally:
        await admin.close()


async def one_payment(pool) -> None:
    """A payment in the history window (so that what stops training is the labels, not emptiness)."""
    async with pool.acquire() as conn:
        await new_order(conn, new_user(), "payin", 1_00)


async def test_history_with_too_few_frauds_stores_nothing(pool, settings):
    await one_payment(pool)
    before = await pool.fetchval("SELECT count(*) FROM risk_model")
    strict = msgspec.structs.replace(settings, risk_train_frauds_min=10**9)
    with pytest.raises(train.NotEnoughLabels, match="fewer than the 1000000000 required"):
        await retrain.train_history(pool, strict, trained_by="test")
    assert await pool.fetchval("SELECT count(*) FROM risk_model") == before


async def test_the_weekly_run_logs_a_skipped_run(pool, settings):
    await one_payment(pool)
    before = await pool.fetchval("SELECT count(*) FROM risk_model")
    strict = msgspec.structs.replace(settings, risk_train_frauds_min=10**9)
    with capture_logs() as logs:
        assert await retrain.weekly(pool, strict) is None
    skipped = [e for e in logs if e["event"] == "risk.train.skipped"]
    assert len(skipped) == 1 and "PAYCELL_RISK_TRAIN_FRAUDS_MIN" in skipped[0]["reason"]
    assert await pool.fetchval("SELECT count(*) FROM risk_model") == before


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PAYCELL, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PAYCELL_LOG_LEVEL": "warning", **(env or {})})


async def test_the_cli_trains_on_synthetic_payments_and_lists_the_models(pool):
    await retire_promoted(pool)
    out = run("risk", "train", "--synthetic", "--users", str(USERS), "--days", str(DAYS), "--seed", str(SEED),
              "--trained-by", "ops-alice")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ROC AUC" in out.stdout and "score >= 0.97" in out.stdout
    assert "promoted: ROC AUC" in out.stdout, out.stdout
    version = await pool.fetchval("SELECT version FROM risk_model WHERE status = 'promoted'")
    row = await pool.fetchrow("SELECT trained_by, source, source_detail, metrics FROM risk_model WHERE version = $1",
                              version)
    assert f"model v{version} " in out.stdout
    assert (row["trained_by"], row["source"]) == ("ops-alice", "synthetic")
    assert row["source_detail"] == {"users": USERS, "days": DAYS, "seed": SEED}
    assert row["metrics"]["roc_auc"] >= 0.9

    listed = run("risk", "models", "--limit", "3")
    assert listed.returncode == 0 and f"v{version} " in listed.stdout and "promoted" in listed.stdout, listed.stdout


async def test_the_cli_stops_without_enough_labelled_history(pool):
    await one_payment(pool)
    before = await pool.fetchval("SELECT count(*) FROM risk_model")
    out = run("risk", "train", env={"PAYCELL_RISK_TRAIN_FRAUDS_MIN": "1000000000"})
    assert out.returncode == 1, out.stdout + out.stderr
    assert "training stopped, nothing stored" in out.stderr
    assert await pool.fetchval("SELECT count(*) FROM risk_model") == before
    bad = run("risk", "train", "--synthetic", "--trained-by", "no spaces please")
    assert bad.returncode == 2 and "--trained-by" in bad.stderr
    mixed = run("risk", "train", "--users", "10")
    assert mixed.returncode == 2 and "add --synthetic" in mixed.stderr


async def test_the_weekly_actor_runs_in_a_worker(worker, broker):
    with open(worker.log_path, "rb") as f:
        offset = len(f.read())
    broker.enqueue(dramatiq.Message(queue_name=STEP_QUEUES["train_model"], actor_name="train_model", args=(),
                                    kwargs={}, options={}))

    async def finished() -> bytes | None:
        with open(worker.log_path, "rb") as f:
            tail = f.read()[offset:]
        return tail if b'"risk.train.skipped"' in tail or b'"risk.train.done"' in tail else None

    tail = await wait_until(finished, timeout_s=120, interval_s=0.2)
    assert tail, "the worker did not run train_model"
    assert b'"risk.train.started"' in tail and b'"source": "history"' in tail
