"""`paycell reviews`, run as a process against the test database, and (approve) the review
tests' worker's Redis: list, show, claim, approve, decline, expire."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.helpers import assert_ledger_clean, final_payment, fund_wallet, new_user, wallet
from tests.review.support import item_of, park

PAYCELL = os.path.join(os.path.dirname(sys.executable), "paycell")


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PAYCELL, "reviews", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})


async def test_an_operator_works_the_queue_from_the_cli(review_api, review_settings, review_env, pool, book):
    api, settings = review_api, review_settings
    payer, payee = new_user("payer"), new_user("payee")
    await fund_wallet(pool, book, payee, 1_000_00)
    payin_id, payin = await park(api, settings, pool, payer, "payin")
    payout_id, payout = await park(api, settings, pool, payee, "payout")

    listed = run(review_env, "list", "--state", "open", "--limit", "10000")
    assert listed.returncode == 0, listed.stderr
    assert payin.review_id in listed.stdout and payout.review_id in listed.stdout
    assert "new instrument, large amount" in listed.stdout

    shown = run(review_env, "show", payin.review_id)
    assert shown.returncode == 0, shown.stderr
    detail = json.loads(shown.stdout)
    assert detail["review_id"] == payin.review_id and detail["payment"]["payment_id"] == payin_id
    assert any(e["type"] == "order.risk_checked" and e["data"]["fired"] for e in detail["events"])

    claimed = run(review_env, "claim", payin.review_id, "--as", "ops-cli")
    assert claimed.returncode == 0 and "claimed by ops-cli" in claimed.stdout, claimed.stderr
    other = run(review_env, "approve", payin.review_id, "--as", "ops-other")
    assert other.returncode == 1 and "review_claimed" in other.stderr
    own = run(review_env, "approve", payin.review_id, "--as", payer)
    assert own.returncode == 1 and "review_own_payment" in own.stderr

    approved = run(review_env, "approve", payin.review_id, "--as", "ops-cli", "--note", "ok")
    assert approved.returncode == 0 and "approved by ops-cli" in approved.stdout, approved.stderr
    declined = run(review_env, "decline", payout.review_id, "--as", "ops-cli", "--note", "no")
    assert declined.returncode == 0 and "now failed" in declined.stdout, declined.stderr
    again = run(review_env, "decline", payout.review_id, "--as", "ops-cli")
    assert again.returncode == 1 and "review_resolved" in again.stderr
    assert run(review_env, "show", "no-such-id").returncode == 1

    assert (await final_payment(api, settings, payer, payin_id))["status"] == "succeeded"
    done = await final_payment(api, settings, payee, payout_id)
    assert done["status"] == "failed" and done["failure_code"] == "review_declined"
    assert (await wallet(api, settings, payee))["USD"] == ("1000.00", "0.00")
    assert (await item_of(pool, payer, payin_id)).note == "ok"
    expired = run(review_env, "expire")
    assert expired.returncode == 0 and "expired" in expired.stdout, expired.stderr
    await assert_ledger_clean(pool)
