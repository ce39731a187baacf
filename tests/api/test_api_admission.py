"""Admission control: while the payments backlog is past its bound, a new payment gets 503
`pipeline_behind` with Retry-After and nothing is written; reads keep working; once the backlog
drains, payments are accepted again."""
from __future__ import annotations

import uuid

import msgspec
import redis

from paycell.actors.broker import build_broker, send
from paycell.admission.gate import Gate, lag_bound_ms
from paycell.admission.lag import Lag, read_lag
from paycell.errors import PipelineBehind
from paycell.http.app import create_app
from paycell.http.state import LAG
from tests.api.conftest import parked
from tests.api.support import error_of, payer, payin, post_payment
from tests.helpers import assert_ledger_clean, auth_header, wait_until

DEPTH_MAX = 3


async def _requests_with(pool, payment_id: str) -> int:
    return await pool.fetchval("SELECT count(*) FROM payment_request WHERE payment_id = $1", uuid.UUID(payment_id))


async def test_new_payments_are_refused_cleanly_while_the_backlog_is_past_its_bound(aiohttp_client, migrated, pool):
    # No worker listens on this Redis database: every accepted payment's message stays queued.
    settings = msgspec.structs.replace(parked(migrated), admission_queue_depth_max=DEPTH_MAX,
                                       admission_check_interval_ms=20)
    api = await aiohttp_client(create_app(settings))
    user = await payer(api, settings, "admission")
    accepted = []
    for _ in range(DEPTH_MAX + 1):
        body = payin(user, amount="1.00")
        assert (await post_payment(api, settings, user, body)).status == 202
        accepted.append(body["payment_id"])
    sampler = api.app[LAG]
    assert await wait_until(lambda: _depth_at_least(sampler, DEPTH_MAX + 1), timeout_s=10)

    refused = payin(user, amount="1.00")
    resp = await post_payment(api, settings, user, refused)
    assert error_of(resp) == (503, "pipeline_behind") and int(resp.headers["Retry-After"]) >= 1
    assert "backlog" in resp.json["error"]["message"]
    assert await _requests_with(pool, refused["payment_id"]) == 0  # nothing written
    # Reads keep working: the accepted payments and the list.
    got = await api.get(f"/payments/payment/v1/{accepted[0]}", headers=auth_header(settings, user))
    assert got.status == 200 and (await got.json())["status"] == "processing"
    listed = await api.get("/payments/payment/v1", headers=auth_header(settings, user))
    assert listed.status == 200 and len((await listed.json())["data"]) == DEPTH_MAX + 1

    # The workers catch up (here: the queue is emptied): payments are accepted again, the same one included.
    redis.Redis.from_url(settings.redis_url).flushdb()
    assert await wait_until(lambda: _depth_at_most(sampler, 0), timeout_s=10)
    assert (await post_payment(api, settings, user, refused)).status == 202
    assert await _requests_with(pool, refused["payment_id"]) == 1
    await assert_ledger_clean(pool)


async def _depth_at_least(sampler, n: int) -> bool:
    return sampler.latest is not None and sampler.latest.depth >= n


async def _depth_at_most(sampler, n: int) -> bool:
    return sampler.latest is not None and sampler.latest.depth <= n


async def test_the_oldest_message_age_is_read_from_the_queue(migrated):
    settings = parked(migrated)
    client = redis.asyncio.Redis.from_url(settings.redis_url)
    try:
        empty = await read_lag(client)
        assert (empty.depth, empty.oldest_age_ms) == (0, 0)
        broker = build_broker(settings)
        send(broker, "screen", "user-none", str(uuid.uuid4()))
        # Backdate the message as if it had waited 4 s: the age is the head's enqueue time.
        raw_client = redis.Redis.from_url(settings.redis_url)
        [head] = raw_client.lrange("dramatiq:payments", 0, 0)
        body = msgspec.json.decode(raw_client.hget("dramatiq:payments.msgs", head))
        body["message_timestamp"] -= 4_000
        raw_client.hset("dramatiq:payments.msgs", head, msgspec.json.encode(body))
        send(broker, "screen", "user-none", str(uuid.uuid4()))
        lag = await read_lag(client)
        assert lag.depth == 2 and 4_000 <= lag.oldest_age_ms < 60_000
        broker.close()
    finally:
        await client.aclose()
        redis.Redis.from_url(settings.redis_url).flushdb()


def test_the_gate_refuses_on_age_or_depth_and_never_on_a_stale_reading():
    now = [100.0]
    gate = Gate(lag_ms_max=5_000, depth_max=1_000, stale_ms=1_000, clock=lambda: now[0])
    gate.check(None)  # no reading yet: admit
    gate.check(Lag(depth=999, oldest_age_ms=4_999, read_at_s=100.0))
    for lag, retry_after_s in ((Lag(depth=10, oldest_age_ms=7_200, read_at_s=100.0), 5),   # at most the bound
                               (Lag(depth=1_001, oldest_age_ms=300, read_at_s=100.0), 1),  # at least 1 s
                               (Lag(depth=2_000, oldest_age_ms=2_500, read_at_s=100.0), 3)):
        try:
            gate.check(lag)
        except PipelineBehind as exc:
            assert exc.retry_after_s == retry_after_s and exc.http_status == 503
        else:
            raise AssertionError(f"{lag} was admitted")
    now[0] = 101.5  # the last reading is 1.5 s old, Redis may be down: never refuse on a guess
    gate.check(Lag(depth=10_000, oldest_age_ms=60_000, read_at_s=100.0))
    assert gate.refused == 3


def test_the_queue_age_bound_leaves_the_time_to_completion_bound_room_for_a_second_wait_and_the_work():
    assert lag_bound_ms(30_000) == 9_000 and lag_bound_ms(5_000) == 1_500
    assert lag_bound_ms(1) == 1  # never 0: an empty queue's head is 0 ms old and is admitted
