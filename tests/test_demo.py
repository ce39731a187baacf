"""`paycell dev --exit-after-demo`, as a newcomer runs it: every process and the README's demo
(tests/risk/test_demo.py runs the demo against the suite's own processes)."""
from __future__ import annotations

import os
import subprocess
import sys

import redis

from paycell.psp import sims
from tests.conftest import _free_port
from tests.helpers import assert_ledger_clean, no_periodic_job_overdue


RISK_LINES = ["succeeded", "succeeded", "failed (risk_blocked)", "processing", "succeeded"]


def _risk_lines(out: str) -> list[str]:
    """The outcomes the demo's risk part printed: Mallory's first, fifth and sixth pay-ins, Carol's
    parked pay-in and the same after an operator approved it."""
    return [line.split(": ", 1)[1].split("  (")[0] for line in out.splitlines()
            if line.startswith("  pay-in ") and (" by mallory-" in line or " by carol-" in line)]


async def test_paycell_dev_runs_every_process_and_the_demo_on_ports_of_its_own(migrated, pool):
    """`scripts/run --exit-after-demo` as a newcomer with other ports runs it: web, worker, scheduler
    and simulator under honcho, the workers calling the simulator on the port it was given."""
    # Without the suite's simulator address, connector credentials and routes: `paycell dev` makes its own.
    own = {"PAYCELL_PSP_SIM_URL", "PAYCELL_PSP_SIM_WEBHOOK_BASE_URL", "PAYCELL_PSP_ROUTES",
           *sims.connector_env("http://unused"),
           "PAYCELL_RISK_RULES_FILE"}  # the shipped default rules, as a newcomer has them
    env = {k: v for k, v in os.environ.items() if k not in own}
    # A Redis database of its own, so the suite's worker (which calls the suite's simulator) can
    # never take this stack's messages: the workers `paycell dev` starts must do the work.
    base, _, db = migrated.redis_url.rpartition("/")
    redis_url = f"{base}/{int(db) + 3}"
    redis.Redis.from_url(redis_url).flushdb()
    await no_periodic_job_overdue(pool)
    env.update(PAYCELL_HTTP_PORT=str(_free_port()), PAYCELL_PSP_SIM_PORT=str(_free_port()),
               PAYCELL_REDIS_URL=redis_url)
    paycell = os.path.join(os.path.dirname(sys.executable), "paycell")
    done = subprocess.run([paycell, "dev", "--exit-after-demo"], env=env, capture_output=True, text=True,
                          timeout=180, start_new_session=True)
    lines = [line for line in done.stdout.splitlines() if " USD  " in line]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert [line.rsplit(": HTTP ", 1)[1] for line in lines] == [
        "201 succeeded", "201 succeeded", "201 succeeded", "201 succeeded", "201 failed (card_declined)"], \
        done.stdout[-3000:]
    assert _risk_lines(done.stdout) == RISK_LINES, done.stdout[-3000:]
    # (honcho's process logs share stdout with the demo: a log line may land inside a demo line)
    scheduled = [line for line in done.stdout.splitlines() if "  scheduled run at " in line]
    assert len(scheduled) == 1 and ": succeeded (payment " in scheduled[0], \
        "\n".join(line for line in done.stdout.splitlines() if "schedule" in line)[-3000:]
    assert "  schedule cancelled (its payment stays)" in done.stdout
    assert "ledger check: OK" in done.stdout
    redis.Redis.from_url(redis_url).flushdb()
    await assert_ledger_clean(pool)
