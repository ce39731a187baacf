"""Idempotency keys expire (issue 6 item 13): deleted after `idempotency_key_retention_s` by a job
in bounded batches; the payments they named stay; a client re-sending an expired key is told so
(422 `idempotency_key_expired`), never given a 500 or a second payment."""
from __future__ import annotations

import asyncpg
import msgspec
import pytest

from paycell.config import SettingsError, load
from paycell.retention import expire_idempotency_keys
from tests.api.support import PAYMENTS, error_of, get_as, payer, payin, post_payment, rows_for

async def _age_keys(pool, user: str, seconds: int) -> None:
    await pool.execute("UPDATE idempotency_key SET created_at = now() - make_interval(secs => $2) WHERE user_id = $1",
                       user, float(seconds))

async def _expire_until_done(pool, settings) -> int:
    # Other tests' keys may be expired too: run until nothing is left, count everything.
    deleted = 0
    while not (result := await expire_idempotency_keys(pool, settings)).done or result.deleted:
        deleted += result.deleted
    return deleted

async def test_keys_past_retention_are_deleted_and_their_payments_kept(api, settings, pool):
    old, fresh = await payer(api, settings), await payer(api, settings)
    for user in (old, fresh):
        assert (await post_payment(api, settings, user, payin(user))).status == 202
    await _age_keys(pool, old, settings.idempotency_key_retention_s + 60)
    await _age_keys(pool, fresh, settings.idempotency_key_retention_s - 60)
    assert await _expire_until_done(pool, settings) >= 1
    assert await rows_for(pool, old) == (1, 1, 0)
    assert await rows_for(pool, fresh) == (1, 1, 1)

async def test_a_client_re_sending_an_expired_key_gets_422_and_no_second_payment(api, settings, pool):
    user = await payer(api, settings)
    body = payin(user)
    first = await post_payment(api, settings, user, body)
    assert first.status == 202
    await _age_keys(pool, user, settings.idempotency_key_retention_s + 1)
    await _expire_until_done(pool, settings)
    for resent in (body, {**body, "amount": "99.00"}):  # the same request, or another under the same id
        reply = await post_payment(api, settings, user, resent)
        assert error_of(reply) == (422, "idempotency_key_expired") and reply.json["error"]["field"] == "payment_id"
    assert await rows_for(pool, user) == (1, 1, 0)
    # The earlier payment is still there under its id.
    fetched = await get_as(api, settings, user, f"{PAYMENTS}/{body['payment_id']}")
    assert fetched.status == 200 and fetched.json["amount"] == "12.30"

async def test_expiry_runs_in_bounded_batches_and_says_how_far_it_got(api, settings, pool):
    await _expire_until_done(pool, settings)  # nothing else expired is left: the counts below are ours
    user = await payer(api, settings)
    for _ in range(5):
        assert (await post_payment(api, settings, user, payin(user))).status == 202
    await _age_keys(pool, user, settings.idempotency_key_retention_s + 1)
    bounded = msgspec.structs.replace(settings, idempotency_expire_batch_rows=2, idempotency_expire_batches_max=2)
    lines: list[str] = []
    first = await expire_idempotency_keys(pool, bounded, progress=lines.append)
    assert (first.deleted, first.batches, first.done) == (4, 2, False)
    assert len(lines) == 2 and lines[-1].endswith("batch 2 deleted 2, 4 in all")
    second = await expire_idempotency_keys(pool, bounded)
    assert (second.deleted, second.done) == (1, True)
    assert await rows_for(pool, user) == (5, 5, 0)

async def test_a_key_still_held_by_a_waiting_request_is_not_deleted(api, settings, pool):
    user = await payer(api, settings)
    assert (await post_payment(api, settings, user, payin(user))).status == 202
    await pool.execute("""UPDATE idempotency_key SET created_at = now() - interval '30 days',
                                 locked_until = now() + interval '1 minute' WHERE user_id = $1""", user)
    await _expire_until_done(pool, settings)
    assert await rows_for(pool, user) == (1, 1, 1)
    await pool.execute("UPDATE idempotency_key SET locked_until = NULL WHERE user_id = $1", user)

async def test_the_app_role_may_delete_idempotency_keys_and_nothing_else(pool):
    async with pool.acquire() as conn:
        await conn.execute("DELETE FROM idempotency_key WHERE false")
        for table in ("payment_request", "payment_order"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(f"DELETE FROM {table} WHERE false")

def test_a_retention_shorter_than_a_day_is_refused():
    with pytest.raises(SettingsError, match="PAYCELL_IDEMPOTENCY_KEY_RETENTION_S"):
        load({"PAYCELL_IDEMPOTENCY_KEY_RETENTION_S": "86399"})
    assert load({"PAYCELL_IDEMPOTENCY_KEY_RETENTION_S": "86400"}).idempotency_key_retention_s == 86_400
    assert load({}).idempotency_key_retention_s == 7 * 86_400
