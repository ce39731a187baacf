"""`Prefer: wait=N` holds the answer until the payment is done (woken by NOTIFY, not polling),
and survives the listening connection dropping. The pipeline's own store calls stand in for
a worker finishing the payment."""
from __future__ import annotations

import asyncio

import asyncpg

from paycell.http.state import WAITER
from paycell.store import payments
from tests.helpers import wait_until
from tests.api.support import PAYMENTS, Reply, get_as, payer, payin, post_payment, rows_for
from tests.helpers import lock_by_id


async def _fail_the_order(pool, user: str, payment_id: str) -> None:
    """What a step does when it gives up: move the order to `failed` (which NOTIFYs)."""
    async with pool.acquire() as conn, conn.transaction():
        order_id = await conn.fetchval(
            "SELECT payment_order_id::text FROM payment_order WHERE user_id = $1 AND payment_id = $2",
            user, payment_id)
        order = await lock_by_id(conn, order_id)
        await payments.move(conn, order, "failed", event="payment.failed", failure_code="test_failed")


async def _pay_and_fail_while_waiting(api, settings, pool, prefer: str, before_failing=None) -> tuple[dict, Reply]:
    """POST a pay-in with `prefer`; once it is stored (the client now waits), run `before_failing`
    and fail the order. Returns the body and the waiting client's answer."""
    user = await payer(api, settings)
    body = payin(user)
    waiting = asyncio.create_task(post_payment(api, settings, user, body, prefer=prefer))

    async def accepted() -> bool:
        return (await rows_for(pool, user))[0] == 1

    assert await wait_until(accepted, timeout_s=10)
    if before_failing is not None:
        await before_failing()
    await _fail_the_order(pool, user, body["payment_id"])
    return body, await waiting


async def test_a_client_waiting_gets_201_as_soon_as_the_payment_is_done(api, settings, pool):
    body, reply = await _pay_and_fail_while_waiting(api, settings, pool, "wait=10")
    assert reply.status == 201 and reply.headers["Preference-Applied"] == "wait=10"
    assert (reply.json["status"], reply.json["failure_code"]) == ("failed", "test_failed")
    replay = await post_payment(api, settings, body["user_id"], body)
    assert (replay.status, replay.headers["Idempotent-Replayed"], replay.json) == (201, "true", reply.json)


async def test_a_wait_longer_than_allowed_is_clamped(api, settings, pool):
    _, reply = await _pay_and_fail_while_waiting(api, settings, pool, "wait=3600")
    assert reply.status == 201 and reply.headers["Preference-Applied"] == f"wait={settings.prefer_wait_s_max}"


async def test_a_waiting_client_is_answered_even_when_the_listening_connection_drops(api, settings, pool):
    waiter = api.app[WAITER]

    async def drop_the_listening_connection() -> None:
        admin = await asyncpg.connect(settings.admin_database_url)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", waiter.backend_pid)
        finally:
            await admin.close()

    # The order fails while the waiter may still be reconnecting: its NOTIFY may be lost, the
    # wake-up after reconnecting is not.
    body, reply = await _pay_and_fail_while_waiting(api, settings, pool, "wait=10", drop_the_listening_connection)
    assert reply.status == 201 and reply.json["status"] == "failed"

    async def reconnected() -> bool:
        return waiter.reconnects >= 1

    assert await wait_until(reconnected, timeout_s=10)
    fetched = await get_as(api, settings, body["user_id"], f"{PAYMENTS}/{body['payment_id']}")
    assert fetched.json["status"] == "failed"
