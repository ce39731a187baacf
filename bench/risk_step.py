"""The risk step's cost per payment, part by part, in one run.

    .venv/bin/python bench/risk_step.py                 # 2000 payments per part, 3 rounds
    .venv/bin/python bench/risk_step.py --payments 500  # a quick look

A figure, not a test. On its own database `paycell_bench_risk` (dropped, recreated and migrated at
every start) it loads a synthetic history (paycell.risk.synthetic, ending now, so that the
velocity windows and the model's features see recent payments), creates `--payments` orders in
`requested` for the history's users, and times, per order, each part the screen step adds for the
risk engine, round-robin over the parts in `--rounds` rounds so that a noisy moment hits them alike:

  lock            the screen step's locking statement as before the rules (accepted total,
                  attached connectors), in a transaction rolled back: the baseline
  lock+rules      the same statement with the default rules' plan (request/instrument facts and
                  every velocity aggregate of the rules that apply to the order's kind)
  lock+features   the same statement with the plan of a model in force: the rules' values and the
                  model's features snapshot (history_pg.snapshot_expression), what the screen
                  step sends when a model is promoted
  evaluate        the rules' evaluation over those values (CPU only)
  features alone  the features' snapshot in a statement of its own (history_pg.online_features),
                  as the screen step read it before issue 8's fold: for comparison only
  score           the features from the snapshot and the promoted model's score (CPU only); the
                  model is trained on synthetic payments and promoted at setup (`--no-model`: none)

Medians and p99 in microseconds per payment, and the risk step's total next to the baseline:
(lock+features - lock) + evaluate + score with a model, (lock+rules - lock) + evaluate without.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg  # noqa: E402

from paycell.config import load  # noqa: E402
from paycell.config.settings import with_database  # noqa: E402
from paycell.risk import synthetic  # noqa: E402
from paycell.risk.engine import Plan, RiskEngine  # noqa: E402
from paycell.risk.history_pg import features_of, online_features, wallet_of  # noqa: E402
from paycell.risk.scorer import Scorer  # noqa: E402
from paycell.rules.in_force import RulesInForce, rules_file_text  # noqa: E402
from paycell.store import payments, risk_totals  # noqa: E402
from paycell.store.db import create_pool  # noqa: E402
from paycell.store.migrate import migrate  # noqa: E402

BENCH_DB = "paycell_bench_risk"


async def recreate(settings) -> None:
    admin = await asyncpg.connect(with_database(settings.admin_database_url, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{BENCH_DB}"')
    finally:
        await admin.close()
    await migrate(settings)


async def load_history(settings, users: int, days: int) -> list[synthetic.Payment]:
    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=days)
    history = list(synthetic.generate(users=users, days=days, seed=17, start=start))
    owner = await asyncpg.connect(settings.admin_database_url)
    try:
        await owner.execute(f'SET ROLE "{settings.owner_role}"')
        seen = {}
        for p in history:
            seen.setdefault(p.user_id, p.account_created_at)
            if p.counterparty_user_id:
                seen.setdefault(p.counterparty_user_id, p.created_at)
        await owner.executemany("INSERT INTO app_user (user_id, registered_at) VALUES ($1, $2)", list(seen.items()))
        rows = []
        for p in history:
            wallet = wallet_of(p.user_id)
            src, dst = {"payin": (p.instrument, wallet), "payout": (wallet, p.instrument),
                        "transfer": (wallet, wallet_of(p.counterparty_user_id or p.user_id))}[p.kind]
            failed = p.outcome == "declined"
            rows.append((uuid.uuid4(), p.user_id, p.payment_option, p.kind, src, dst, p.amount_minor, p.currency,
                         "failed" if failed else "succeeded", "card_declined" if failed else None, p.created_at,
                         p.ip, p.country))
        await owner.executemany(
            """INSERT INTO payment_request (payment_id, user_id, payment_option, kind, from_acct, to_acct,
                   amount_minor, currency, status, failure_code, is_complete, created_at, updated_at, client_ip,
                   client_country)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, true, $11, $11, $12::inet, $13)""", rows)
        instruments = {(p.user_id, p.instrument, p.payment_option): p.instrument_attached_at
                       for p in history if p.instrument}
        await owner.executemany(
            """INSERT INTO instrument (user_id, instrument_id, connector, payment_option, provider_token, created_at)
               VALUES ($1, $2, 'test', $3, $4, $5) ON CONFLICT DO NOTHING""",
            [(u, uuid.uuid4(), option, token, at) for (u, token, option), at in instruments.items()])
        await owner.execute("ANALYZE")
    finally:
        await owner.close()
    return history


async def new_orders(pool, history: list[synthetic.Payment], n: int) -> list[tuple[str, str]]:
    """`n` orders in `requested`, each a copy of a recent payment of the history, made now."""
    recent = history[-n:]
    ids = []
    async with pool.acquire() as conn:
        for p in recent:
            wallet = wallet_of(p.user_id)
            src, dst = {"payin": (p.instrument, wallet), "payout": (wallet, p.instrument),
                        "transfer": (wallet, wallet_of(p.counterparty_user_id or p.user_id))}[p.kind]
            order_id = str(uuid.uuid4())
            new = payments.NewPayment(
                payment_id=str(uuid.uuid4()), payment_order_id=order_id, user_id=p.user_id, kind=p.kind,
                payment_option=p.payment_option, from_acct=src, to_acct=dst, amount_minor=p.amount_minor,
                currency=p.currency, created_at=datetime.datetime.now(datetime.timezone.utc), client_ip=p.ip,
                client_country=p.country)
            assert await payments.accept(conn, new, request_sha256=b"bench", response_status=202, response_body=b"{}",
                                         lock_s=0, lease_s=3600, deadline_s=86_400)
            ids.append((p.user_id, order_id))  # the order's key
    return ids


def train_model() -> None:
    """`paycell risk train --synthetic` on the bench database (promoted: the first model there)."""
    paycell = Path(sys.executable).with_name("paycell")
    out = subprocess.run([str(paycell), "risk", "train", "--synthetic", "--users", "2000", "--days", "30",
                          "--trained-by", "bench"], capture_output=True, text=True)
    if out.returncode != 0 or "promoted" not in out.stdout:
        raise SystemExit(f"paycell risk train failed:\n{out.stdout}{out.stderr}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--no-model", action="store_true", help="train no model (the score part is skipped)")
    args = parser.parse_args()
    base = load()
    os.environ["PAYCELL_ADMIN_DATABASE_URL"] = with_database(base.admin_database_url, BENCH_DB)
    if base.database_url:
        os.environ["PAYCELL_DATABASE_URL"] = with_database(base.database_url, BENCH_DB)
    os.environ["PAYCELL_RISK_RULES_FILE"] = ""
    settings = load()
    t0 = time.perf_counter()
    await recreate(settings)
    history = await load_history(settings, args.users, args.days)
    pool = await create_pool(settings, size_max=4)
    orders = await new_orders(pool, history, args.payments)
    print(f"setup: {len(history)} synthetic payments of {args.users} users over {args.days} days, "
          f"{len(orders)} orders, {time.perf_counter() - t0:.1f} s", flush=True)
    if not args.no_model:
        train_model()
    scorer = Scorer(settings.risk_reload_s)
    rules = RulesInForce(settings.risk_reload_s, default_source=rules_file_text(settings))
    rules_only = RiskEngine(rules, None, first_param=risk_totals.EXTRA_FIRST_PARAM)
    times: dict[str, list[float]] = {k: [] for k in ("lock", "lock+rules", "lock+features", "evaluate",
                                                      "features alone", "score")}
    async with pool.acquire() as conn:
        plan = await rules_only.plan(conn)
        scored = Plan.build(plan.in_force, risk_totals.EXTRA_FIRST_PARAM, scored=True)
        if scorer is not None:
            await scorer.refresh(conn)
        model = scorer is not None and scorer.version is not None
        for _ in range(args.rounds):
            for user_id, order_id in orders:
                tr = conn.transaction()
                await tr.start()
                t = time.perf_counter()
                await risk_totals.lock_order_for_screen(conn, user_id, order_id, window_s=86_400, connectors=None)
                times["lock"].append(time.perf_counter() - t)
                await tr.rollback()
                tr = conn.transaction()
                await tr.start()
                t = time.perf_counter()
                order, _, _, values = await risk_totals.lock_order_for_screen(
                    conn, user_id, order_id, window_s=86_400, connectors=None, extra=plan.expressions,
                    extra_args=plan.args)
                times["lock+rules"].append(time.perf_counter() - t)
                t = time.perf_counter()
                rules_only.assess(plan, order, values)
                times["evaluate"].append(time.perf_counter() - t)
                await tr.rollback()
                tr = conn.transaction()
                await tr.start()
                t = time.perf_counter()
                order, _, _, values = await risk_totals.lock_order_for_screen(
                    conn, user_id, order_id, window_s=86_400, connectors=None, extra=scored.expressions, extra_args=scored.args)
                times["lock+features"].append(time.perf_counter() - t)
                t = time.perf_counter()
                await online_features(conn, order, ip=values[0], country=values[1], instrument_attached_at=values[2])
                times["features alone"].append(time.perf_counter() - t)
                if model:
                    t = time.perf_counter()
                    features = features_of(order, values[-1], ip=values[0], country=values[1],
                                           instrument_attached_at=values[2])
                    scorer.score_with_version(features)
                    times["score"].append(time.perf_counter() - t)
                await tr.rollback()
    await pool.close()
    print(f"\n{'part':<14}{'p50 µs':>10}{'p99 µs':>10}")
    p50 = {}
    for name, samples in times.items():
        if not samples:
            print(f"{name:<14}{'-':>10}{'-':>10}  (no promoted model)")
            continue
        q = statistics.quantiles(samples, n=100)
        p50[name] = statistics.median(samples) * 1e6
        print(f"{name:<14}{p50[name]:>10.0f}{q[98] * 1e6:>10.0f}")
    rules = p50["lock+rules"] - p50["lock"] + p50["evaluate"]
    print(f"\nrisk step added per payment (p50s), rules only: {rules:.0f} µs = rules' SQL "
          f"{p50['lock+rules'] - p50['lock']:.0f} + evaluate {p50['evaluate']:.0f}")
    if "score" in p50:
        added = p50["lock+features"] - p50["lock"] + p50["evaluate"] + p50["score"]
        print(f"risk step added per payment (p50s), rules and model: {added:.0f} µs = rules' and features' SQL "
              f"{p50['lock+features'] - p50['lock']:.0f} + evaluate {p50['evaluate']:.0f} + features and score "
              f"{p50['score']:.0f} (the features' statement alone: {p50['features alone']:.0f})")
    print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
