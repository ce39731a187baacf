"""The README's demo against a live API, worker and PSP simulator: it attaches its instruments
first, and every step ends as the README says."""
from __future__ import annotations

import msgspec
import pytest

from paycell.demo import pipeline_demo
from paycell.http.app import create_app
from tests.helpers import assert_ledger_clean


@pytest.mark.usefixtures("worker", "psp_sim")
async def test_the_demo_attaches_its_instruments_and_every_payment_ends_as_described(aiohttp_server, migrated,
                                                                                   pool, capsys):
    server = await aiohttp_server(create_app(migrated))
    assert await pipeline_demo(msgspec.structs.replace(migrated, http_port=server.port)) == 0
    out = capsys.readouterr().out
    assert out.count("attach") == 3 and out.count(": HTTP 201 inst_") == 3, out
    lines = [line for line in out.splitlines() if " USD  " in line]
    assert [line.rsplit(": HTTP ", 1)[1] for line in lines] == [
        "201 succeeded", "201 succeeded", "201 succeeded", "201 failed (card_declined)"], out
    assert "ledger check: OK" in out
    await assert_ledger_clean(pool)
