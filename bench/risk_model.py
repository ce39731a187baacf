"""The fraud model's costs: training on synthetic payments, and per payment online: the Scorer's
`refresh` (a hit within PAYCELL_RISK_RELOAD_S, and the check of the promoted version) and `score`.

    .venv/bin/python bench/risk_model.py                      # 2,000 users x 30 days, 20,000 calls each
    .venv/bin/python bench/risk_model.py --users 500 --calls 2000 --database paycell_scratch

Runs in its own database (`paycell_bench_risk` unless --database; created and migrated on first
use, on the server of PAYCELL_ADMIN_DATABASE_URL). It trains one model, stores it as promoted (the
promoted model there is retired first), then times each call in a loop on one connection and
reports the median and the 99th percentile per call, and scikit-learn's own `predict_proba` on the
same single row for comparison.
"""
from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgspec  # noqa: E402
import numpy as np  # noqa: E402
import sklearn  # noqa: E402

from paycell import logs  # noqa: E402
from paycell.config import load  # noqa: E402
from paycell.config.settings import with_database  # noqa: E402
from paycell.risk import model_io, train  # noqa: E402
from paycell.risk.features import offline  # noqa: E402
from paycell.risk.promote import Candidate, store_and_decide  # noqa: E402
from paycell.risk.scorer import Scorer  # noqa: E402
from paycell.risk.synthetic import generate  # noqa: E402
from paycell.store.db import create_pool  # noqa: E402
from paycell.store.migrate import migrate  # noqa: E402

BENCH_DB = "paycell_bench_risk"


def _timed(calls: int, fn) -> tuple[float, float]:
    """(median, p99) in µs of `calls` calls of fn()."""
    samples = []
    for _ in range(calls):
        started = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - started) / 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99)]


async def _timed_async(calls: int, fn) -> tuple[float, float]:
    samples = []
    for _ in range(calls):
        started = time.perf_counter_ns()
        await fn()
        samples.append((time.perf_counter_ns() - started) / 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99)]


async def main(args) -> int:
    logs.configure("warning")
    base = load()
    settings = msgspec.structs.replace(base, admin_database_url=with_database(base.admin_database_url, args.database),
                                       **({"database_url": with_database(base.database_url, args.database)}
                                          if base.database_url else {}))
    await migrate(settings)
    print(f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"scikit-learn {sklearn.__version__}, numpy {np.__version__}")

    started = time.perf_counter()
    payments = list(generate(users=args.users, days=args.days, seed=args.seed))
    data = train.build_dataset(payments, holdout_share=settings.risk_train_holdout_share)
    features_s = time.perf_counter() - started
    started = time.perf_counter()
    model = train.fit(data, seed=args.seed)
    fit_s = time.perf_counter() - started
    metrics = train.evaluate(train.holdout_scores(model, data), data.holdout_y)
    counts = data.counts()
    print(f"training: {len(payments)} synthetic payments ({args.users} users x {args.days} days, seed {args.seed}): "
          f"generate + features {features_s:.1f} s, fit {fit_s:.1f} s on {counts['train_rows']} rows "
          f"({counts['train_frauds']} frauds)")
    print(f"held out: {metrics.rows} payments, {metrics.frauds} frauds: ROC AUC {metrics.roc_auc:.4f}, "
          f"average precision {metrics.average_precision:.4f}")
    for at in metrics.at_thresholds:
        print(f"  score >= {at.threshold}: {at.flagged} flagged, precision "
              f"{'-' if at.precision is None else f'{at.precision:.3f}'}, recall {at.recall:.3f}")

    blob = model_io.dumps(model)
    started = time.perf_counter()
    model_io.loads(blob, feature_names=train.feature_names(), digest=model_io.sha256(blob))
    load_ms = (time.perf_counter() - started) * 1000
    print(f"model: {len(blob) // 1024} KiB (skops, deflated); load + compile + check {load_ms:.0f} ms")

    pool = await create_pool(settings, size_max=2)
    try:
        await pool.execute("UPDATE risk_model SET status = 'retired' WHERE status = 'promoted'")
        decision = await store_and_decide(
            pool, Candidate(blob=blob, metrics=metrics, counts=counts, source="synthetic", fit_s=fit_s,
                            source_detail={"users": args.users, "days": args.days, "seed": args.seed}),
            data, settings, trained_by="bench")
        # Features of held-out payments, as the screen step would hand them over.
        held = [f for p, f in offline(payments) if p.created_at >= data.holdout_from][:1000]
        async with pool.acquire() as conn:
            hit = Scorer(3600.0)
            await hit.refresh(conn)
            check = Scorer(0.0)
            await check.refresh(conn)
            assert hit.version == check.version == decision.version
            print(f"\nper call, {args.calls} calls each (median / p99, µs), model v{decision.version}:")
            median, p99 = await _timed_async(args.calls, lambda: hit.refresh(conn))
            print(f"  refresh, within PAYCELL_RISK_RELOAD_S (no I/O)        {median:8.1f} / {p99:8.1f}")
            median, p99 = await _timed_async(args.calls, lambda: check.refresh(conn))
            print(f"  refresh, version checked (PAYCELL_RISK_RELOAD_S=0)    {median:8.1f} / {p99:8.1f}")
        i = iter(range(10**9))
        median, p99 = _timed(args.calls, lambda: hit.score(held[next(i) % len(held)]))
        print(f"  score(features)                                       {median:8.1f} / {p99:8.1f}")
        row = np.array([held[0].row()])
        median, p99 = _timed(min(args.calls, 5000), lambda: model.predict_proba(row))
        print(f"  (scikit-learn predict_proba, one row, for comparison)  {median:8.1f} / {p99:8.1f}")
        scores = [hit.score(f) for f in held]
        sk = model.predict_proba(np.array([f.row() for f in held]))[:, 1]
        print(f"  |score - predict_proba| over {len(held)} held-out payments: max {np.max(np.abs(sk - scores)):.1e}")
    finally:
        await pool.close()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--database", default=BENCH_DB)
    raise SystemExit(asyncio.run(main(parser.parse_args())))
