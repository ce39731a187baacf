"""One pay-out through the whole pipeline on the bank rail: a worker whose default connector is
`bank` submits it to the simulator (served by `paycell psp-sim` under /bank), polls it while the
rail holds it, and completes it once the simulator's clock has passed the settlement day."""
from __future__ import annotations

import aiohttp
import msgspec
import redis

from paycell.actors.broker import build_broker, send
from tests.conftest import Worker
from tests.helpers import fund_wallet, new_order, new_user, wait_until
from tests.psp.bank.conftest import OK
from tests.helpers import read_by_id

SETTLE_AFTER_S = 5 * 86_400  # from any moment: past a weekend, the next cut-off and one business day


async def test_a_pay_out_on_the_bank_rail_is_polled_until_the_rail_settles_it(settings, pool, book, psp_sim,
                                                                            monkeypatch, tmp_path):
    bank_sim = f"{psp_sim}/bank/_sim"
    base, _, db = settings.redis_url.rpartition("/")
    redis_url = f"{base}/{int(db) + 3}"  # a queue of its own: the session's worker routes to `simulator`
    redis.Redis.from_url(redis_url).flushdb()
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{bank_sim}/reset"), http.post(f"{bank_sim}/webhooks", json={"url": None}):
            pass
        user = new_user("bank")
        await fund_wallet(pool, book, user, 100_00)
        async with pool.acquire() as conn, conn.transaction():
            order_id = await new_order(conn, user, "payout", 40_00, instrument=OK, option="bank_account")

        worker = Worker(str(tmp_path / "worker.log"))
        with monkeypatch.context() as env:
            env.setenv("PAYCELL_PSP_DEFAULT", "bank")
            env.setenv("PAYCELL_PSP_ROUTES", "")
            env.setenv("PAYCELL_REDIS_URL", redis_url)
            worker.start()
        broker = build_broker(msgspec.structs.replace(settings, redis_url=redis_url))
        try:
            send(broker, "screen", user, order_id)

            async def order_in(*states):
                async with pool.acquire() as conn:
                    order = await read_by_id(conn, order_id)
                return order if order.payment_order_status in states else None

            pending = await wait_until(lambda: order_in("psp_pending"), timeout_s=20)
            assert pending is not None and pending.psp == "bank", pending
            async with http.get(f"{bank_sim}/charges") as resp:
                [record] = await resp.json()
            assert (record["order_key"], record["direction"], record["amount_minor"], record["status"]) == (
                order_id, "payout", 40_00, "pending")
            # Polled while the rail holds it: still pending a moment later.
            assert await order_in("psp_pending", "psp_submitting") is not None

            async with http.post(f"{bank_sim}/clock", json={"advance_s": SETTLE_AFTER_S}):
                pass
            done = await wait_until(lambda: order_in("completed", "failed", "needs_attention"), timeout_s=20)
            assert done is not None and done.payment_order_status == "completed", done
            assert done.psp_reference == record["reference"]
            async with http.get(f"{bank_sim}/charges") as resp:
                assert [(c["order_key"], c["status"]) for c in await resp.json()] == [(order_id, "succeeded")]
        finally:
            worker.stop()
            broker.close()
            async with http.post(f"{bank_sim}/reset"):
                pass
