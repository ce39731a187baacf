"""Declines block an instrument (issue 6 item 8): the worker counts each PSP decline in Redis once
it is committed, every web process reads the count before it accepts a payment, and an operator
can clear it. Runs the real pipeline: the API, the worker and the PSP simulator."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid

import msgspec

from paycell.http.app import create_app
from paycell.velocity import Velocity
from tests.api.support import rows_for
from tests.helpers import assert_ledger_clean, new_user, pay, wait_until

PAYCELL = os.path.join(os.path.dirname(sys.executable), "paycell")


async def test_an_instrument_declined_too_often_is_blocked_until_an_operator_clears_it(
        aiohttp_client, migrated, worker, pool):
    settings = msgspec.structs.replace(migrated, instrument_declines_max=2)
    api = await aiohttp_client(create_app(settings))
    limits = Velocity(settings)
    token = f"tok_card_bad{uuid.uuid4().hex[:12]}"  # the simulator refuses an unknown behaviour
    user = new_user()
    try:
        for _ in range(2):
            status, body = await pay(api, settings, user, token, f"wallet:{user}", "5.00", "card", wait_s=10)
            assert (status, body["status"]) == (201, "failed"), body

        async def counted() -> bool:
            return await limits.declines(token) == 2

        assert await wait_until(counted, timeout_s=10)
        status, body = await pay(api, settings, user, token, f"wallet:{user}", "5.00", "card")
        assert (status, body["error"]["code"], body["error"]["field"]) == (422, "instrument_blocked", "from_acct")
        assert (await rows_for(pool, user))[0] == 2  # the refused payment wrote nothing
        # Another instrument of the same user is not blocked; nor is a pay-out to a good one.
        status, _ = await pay(api, settings, user, "tok_card_ok", f"wallet:{user}", "5.00", "card", wait_s=10)
        assert status == 201

        cleared = subprocess.run([PAYCELL, "instrument", "unblock", token], capture_output=True, text=True,
                                 timeout=60)
        assert cleared.returncode == 0 and "2 recent declines cleared" in cleared.stdout, cleared.stderr
        status, body = await pay(api, settings, user, token, f"wallet:{user}", "5.00", "card", wait_s=10)
        assert (status, body["status"]) == (201, "failed")
    finally:
        await limits.clear_declines(token)
        await limits.close()
    await assert_ledger_clean(pool)
