"""What operators see and do: the API (operator role only, the one error shape), the
`paycell reconcile` commands as processes, and a queued break resolved through the review API
with the action taken and who took it."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from paycell.reconcile import settlement
from tests.helpers import assert_ledger_clean, auth_header, operator_header
from tests.reconcile.conftest import paid, stripe_file, stripe_txn, window

PAYCELL = os.path.join(os.path.dirname(sys.executable), "paycell")
ROUTES = [("GET", "/reconcile/catalogue"), ("GET", "/reconcile/runs"),
          ("GET", "/reconcile/runs/00000000-0000-4000-8000-000000000000"), ("POST", "/reconcile/internal"),
          ("POST", "/reconcile/settlements")]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PAYCELL, *args], capture_output=True, text=True, timeout=120)


async def test_every_route_refuses_a_users_token_before_reading_anything(api, settings):
    for method, path in ROUTES:
        resp = await api.request(method, path, headers=auth_header(settings, "user-recon"))
        body = await resp.json()
        assert (resp.status, body["error"]["code"]) == (403, "forbidden"), (method, path, body)


async def test_a_run_report_a_queued_break_and_its_resolution(api, settings, ctx, pool, tmp_path, since):
    a = await paid(pool, "stripe", 10_00)
    b = await paid(pool, "stripe", 20_00)
    done = await settlement.reconcile_file(ctx, "stripe", stripe_file(tmp_path, [stripe_txn(a),
                                                                                 stripe_txn(b, gross_minor=20_50)]),
                                           period=window(since))
    ops = operator_header(settings)
    resp = await api.get(f"/reconcile/runs/{done.run.run_id}", headers=ops)
    view = await resp.json()
    assert resp.status == 200, view
    assert view["counts"] == {"amount_mismatch": 1} and view["queued"] == 1
    assert view["totals"]["USD"]["matched_minor"] == "10.00"
    [brk] = view["breaks"]
    assert brk["kind"] == "amount_mismatch" and brk["payment_order_id"] == b.order_id
    listed = await (await api.get("/reconcile/runs?kind=settlement&limit=5", headers=ops)).json()
    assert done.run.run_id in [r["run_id"] for r in listed["data"]]
    catalogue = await (await api.get("/reconcile/catalogue", headers=ops)).json()
    assert {"psp_succeeded_not_posted", "missing_psp", "duplicate"} <= {k["name"] for k in catalogue["data"]}

    review = f"/reviews/{brk['review_id']}"
    item = await (await api.get(review, headers=ops)).json()
    assert item["kind"] == "reconciliation" and item["reasons"] == ["amount_mismatch"]
    assert item["evidence"]["amount_minor"] == 20_50 and item["evidence"]["order"]["amount_minor"] == 20_00
    missing = await api.post(review + "/approve", headers=ops, json={"note": "checked"})
    assert (missing.status, (await missing.json())["error"]["field"]) == (400, "action_taken")
    resp = await api.post(review + "/approve", headers=ops,
                          json={"note": "Stripe confirmed 20.00", "action_taken": "asked Stripe to correct its report"})
    resolved = await resp.json()
    assert resp.status == 200, resolved
    assert (resolved["state"], resolved["resolved_by"], resolved["action_taken"]) == (
        "approved", "ops-alice", "asked Stripe to correct its report")
    again = await api.post(review + "/decline", headers=ops, json={"action_taken": "x"})
    assert (again.status, (await again.json())["error"]["code"]) == (409, "review_resolved")


async def test_bad_requests_get_the_one_error_shape(api, settings):
    ops = operator_header(settings)
    cases = [(api.get("/reconcile/runs/not-a-uuid", headers=ops), 404, "not_found"),
             (api.get("/reconcile/runs?kind=weekly", headers=ops), 400, "invalid_request"),
             (api.post("/reconcile/settlements", headers=ops, json={"connector": "acme", "day": "2026-11-25"}), 422,
              "unknown_connector"),
             (api.post("/reconcile/settlements", headers=ops, json={"connector": "stripe"}), 400, "invalid_request")]
    for request, status, code in cases:
        resp = await request
        assert (resp.status, (await resp.json())["error"]["code"]) == (status, code)
    resp = await api.post("/reconcile/settlements", headers=ops, json={"connector": "stripe", "day": "2026-11-25"})
    assert resp.status == 202 and (await resp.json())["args"] == ["stripe", "2026-11-25"]


async def test_the_commands_reconcile_a_file_dry_run_and_report(pool, tmp_path, psp_sim):
    a = await paid(pool, "stripe", 31_00)
    path = stripe_file(tmp_path, [stripe_txn(a)])
    rules = tmp_path / "rules.json"
    rules.write_text('{"name": "lenient", "criteria": [{"field": "amount", "operator": "drift_minor", '
                     '"allowable_drift": "5"}]}')
    dry = run("reconcile", "settlement", str(path), "--connector", "stripe", "--dry-run", "--rules", str(rules))
    assert dry.returncode == 0, dry.stderr
    assert "rule set lenient: 1 lines" in dry.stdout and "matched" in dry.stdout
    assert await pool.fetchval("SELECT count(*) FROM recon_line WHERE payment_order_id = $1", a.order_id) == 0
    first = run("reconcile", "settlement", str(path), "--connector", "stripe")
    assert first.returncode == 0, first.stderr
    run_id = first.stdout.split()[1]
    second = run("reconcile", "settlement", str(path), "--connector", "stripe")
    assert "reconciled before" in second.stdout and run_id in second.stdout
    shown = run("reconcile", "report", run_id)
    assert shown.returncode == 0 and f"run {run_id} settlement stripe" in shown.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("id,amount\n1,2\n")
    refused = run("reconcile", "settlement", str(bad), "--connector", "stripe")
    assert refused.returncode == 1 and "settlement_file_columns" in refused.stderr
    internal = run("reconcile", "internal")
    assert internal.returncode == 0 and "internal" in internal.stdout, internal.stderr
    await assert_ledger_clean(pool)


async def test_the_enqueued_runs_are_carried_out_by_the_workers_actors(api, settings, pool, worker):
    """POST enqueues; the worker's reconcile_internal and reconcile_settlement actors run them (the
    latter downloads the day's PayPal STL from the simulator)."""
    import datetime

    from tests.helpers import wait_until
    ops = operator_header(settings)
    before = await pool.fetchval("SELECT now()")
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    assert (await api.post("/reconcile/internal", headers=ops)).status == 202
    resp = await api.post("/reconcile/settlements", headers=ops, json={"connector": "paypal", "day": today})
    assert resp.status == 202

    async def both_finished() -> set | None:
        rows = await pool.fetch("""SELECT kind, connector FROM recon_run
                                    WHERE started_at > $1 AND finished_at IS NOT NULL""", before)
        found = {(r["kind"], r["connector"]) for r in rows}
        return found if {("internal", None), ("settlement", "paypal")} <= found else None

    assert await wait_until(both_finished, timeout_s=90, interval_s=0.5)


async def test_a_reconciliation_items_subject_is_frozen_even_for_the_owner(ctx, pool, owner, tmp_path, since):
    import asyncpg
    p = await paid(pool, "stripe", 12_00)
    done = await settlement.reconcile_file(ctx, "stripe", stripe_file(tmp_path, [stripe_txn(p, currency="EUR")]),
                                           period=window(since))
    review_id = await pool.fetchval("SELECT review_id FROM recon_break WHERE run_id = $1", done.run.run_id)
    with pytest.raises(asyncpg.CheckViolationError, match="frozen"):
        await owner.execute("UPDATE review_item SET subject_key = 'other' WHERE review_id = $1", review_id)
