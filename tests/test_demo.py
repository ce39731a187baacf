"""The README's demo against a live API, worker and PSP simulator: it attaches its instruments
first, and every step ends as the README says."""
from __future__ import annotations

import os
import subprocess
import sys

import msgspec
import pytest
import redis

from paycell.demo import pipeline_demo
from paycell.http.app import create_app
from paycell.psp import sims
from tests.conftest import _free_port
from tests.helpers import assert_ledger_clean


@pytest.mark.usefixtures("worker", "psp_sim")
async def test_the_demo_attaches_its_instruments_and_every_payment_ends_as_described(aiohttp_server, migrated,
                                                                                   pool, capsys):
    server = await aiohttp_server(create_app(migrated))
    assert await pipeline_demo(msgspec.structs.replace(migrated, http_port=server.port)) == 0
    out = capsys.readouterr().out
    assert out.count("attach") == 4 and out.count(": HTTP 201 inst_") == 4, out
    lines = [line for line in out.splitlines() if " USD  " in line]
    assert [line.rsplit(": HTTP ", 1)[1] for line in lines] == [
        "201 succeeded", "201 succeeded", "201 succeeded", "201 succeeded", "201 failed (card_declined)"], out
    assert " via stripe: HTTP 201 succeeded" in out, out
    assert "ledger check: OK" in out
    await assert_ledger_clean(pool)


async def test_paycell_dev_runs_every_process_and_the_demo_on_ports_of_its_own(migrated, pool):
    """`scripts/run --exit-after-demo` as a newcomer with other ports runs it: web, worker, scheduler
    and simulator under honcho, the workers calling the simulator on the port it was given."""
    # Without the suite's simulator address, connector credentials and routes: `paycell dev` makes its own.
    own = {"PAYCELL_PSP_SIM_URL", "PAYCELL_PSP_SIM_WEBHOOK_BASE_URL", "PAYCELL_PSP_ROUTES",
           *sims.connector_env("http://unused")}
    env = {k: v for k, v in os.environ.items() if k not in own}
    # A Redis database of its own, so the suite's worker (which calls the suite's simulator) can
    # never take this stack's messages: the workers `paycell dev` starts must do the work.
    base, _, db = migrated.redis_url.rpartition("/")
    redis_url = f"{base}/{int(db) + 3}"
    redis.Redis.from_url(redis_url).flushdb()
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
    assert "ledger check: OK" in done.stdout
    redis.Redis.from_url(redis_url).flushdb()
    await assert_ledger_clean(pool)
