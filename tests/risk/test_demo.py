"""The README's demo against a live API, a worker with the shipped default rules and the PSP
simulators and the scheduler (paycell.schedules.process, in this process): it attaches its
instruments first, and every step ends as the README says, the risk engine's included (a
card-testing block, a review an operator approves) and the schedule that fires during the demo."""
from __future__ import annotations

import asyncio

import msgspec
import pytest

from paycell.demo import pipeline_demo
from paycell.http.app import create_app
from paycell.schedules.process import serve
from tests.helpers import assert_ledger_clean, no_periodic_job_overdue
from tests.test_demo import RISK_LINES, _risk_lines


@pytest.mark.usefixtures("risk_worker", "psp_sim")
async def test_the_demo_attaches_its_instruments_and_every_payment_ends_as_described(aiohttp_server, risk_settings,
                                                                                   pool, capsys):
    settings = msgspec.structs.replace(risk_settings, schedule_jitter_s=0)  # as `paycell dev` runs it
    server = await aiohttp_server(create_app(settings))
    await no_periodic_job_overdue(pool)
    stop = asyncio.Event()
    scheduler = asyncio.create_task(serve(settings, stop))
    try:
        assert await pipeline_demo(msgspec.structs.replace(settings, http_port=server.port)) == 0
    finally:
        stop.set()
        await scheduler
    out = capsys.readouterr().out
    assert out.count("attach") == 4 and out.count(": HTTP 201 inst_") == 4, out
    lines = [line for line in out.splitlines() if " USD  " in line]
    assert [line.rsplit(": HTTP ", 1)[1] for line in lines] == [
        "201 succeeded", "201 succeeded", "201 succeeded", "201 succeeded", "201 failed (card_declined)"], out
    assert " via stripe: HTTP 201 succeeded" in out, out
    assert _risk_lines(out) == RISK_LINES, out
    assert "new instrument, large amount; approved by ops-" in out, out
    assert "  schedule cancelled (its payment stays)" in out and ": succeeded (payment " in out, out
    assert "ledger check: OK" in out
    await assert_ledger_clean(pool)
