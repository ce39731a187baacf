"""Rate limits on payment creation (issue 6 item 8): per user and per instrument, shared by every
web process through Redis, refused with 429 `rate_limited`, Retry-After and the RateLimit pair of
draft-ietf-httpapi-ratelimit-headers-11, writing nothing; and a per-user cap on waiting clients.
Each test builds its own apps with low limits (the suite's are far above what any test sends)."""
from __future__ import annotations

import asyncio
import re
import uuid

import msgspec
import pytest
import redis

from paycell.http.app import create_app
from paycell.velocity import Velocity, _Script
from tests.helpers import attach, new_user, payment_body
from tests.api.support import error_of, payer, payin, post_payment, rows_for


@pytest.fixture
def app_with(aiohttp_client, migrated):
    """A factory of API clients (each its own app, as another web process would be) with settings
    overridden; they park their messages and keep their limits in a Redis db of their own."""
    base, _, db = migrated.redis_url.rpartition("/")
    parked = f"{base}/{int(db) + 2 if db.isdigit() else 3}"
    redis.Redis.from_url(parked).flushdb()

    async def make(**overrides):
        return await aiohttp_client(create_app(msgspec.structs.replace(migrated, redis_url=parked, **overrides)))
    return make


def _check_rate_limit_headers(headers, policy: str, quota: int) -> int:
    retry_after_s = int(headers["Retry-After"])
    assert 1 <= retry_after_s <= 60
    assert headers["RateLimit-Policy"] == f'"{policy}";q={quota};w=60'
    assert re.fullmatch(rf'"{policy}";r=0;t={retry_after_s}', headers["RateLimit"]), headers["RateLimit"]
    return retry_after_s


async def test_a_user_over_the_per_minute_limit_gets_429_with_retry_after_and_writes_nothing(app_with, settings,
                                                                                              pool):
    api = await app_with(rate_user_payments_per_minute=3)
    user, other = await payer(api, settings), await payer(api, settings)
    for _ in range(3):
        assert (await post_payment(api, settings, user, payin(user))).status == 202
    refused = await post_payment(api, settings, user, payin(user))
    assert error_of(refused) == (429, "rate_limited")
    _check_rate_limit_headers(refused.headers, "user", 3)
    assert await rows_for(pool, user) == (3, 3, 3)  # the refused request wrote nothing
    # Another user is not limited by this one; nor is a transfer-free user's other instrument.
    assert (await post_payment(api, settings, other, payin(other))).status == 202


async def test_the_user_limit_is_shared_by_every_web_process(app_with, settings, pool):
    first, second = await app_with(rate_user_payments_per_minute=3), await app_with(rate_user_payments_per_minute=3)
    user = await payer(first, settings)
    for api in (first, second, first):
        assert (await post_payment(api, settings, user, payin(user))).status == 202
    assert error_of(await post_payment(api=second, settings=settings, user=user, body=payin(user))) == (
        429, "rate_limited")
    assert (await rows_for(pool, user))[0] == 3


async def test_an_instrument_over_its_limit_gets_429_whoever_names_it(app_with, settings, pool):
    api = await app_with(rate_instrument_payments_per_minute=2)
    token = f"tok_card_{new_user('ok').replace('-', '')}"  # one instrument of its own
    alice, bob = await payer(api, settings), await payer(api, settings)
    for user in (alice, bob):
        await attach(api, settings, user, token)
        body = payment_body(user, token, f"wallet:{user}", "5.00", "card")
        assert (await post_payment(api, settings, user, body)).status == 202
    refused = await post_payment(api, settings, alice, payment_body(alice, token, f"wallet:{alice}", "5.00", "card"))
    assert error_of(refused) == (429, "rate_limited")
    _check_rate_limit_headers(refused.headers, "instrument", 2)
    assert (await rows_for(pool, alice))[0] == 1
    # The same user with another instrument, and a transfer (no instrument), still pass.
    assert (await post_payment(api, settings, alice, payin(alice))).status == 202


async def start_waiting(api, settings, pool, user: str, *, wait_s: int) -> asyncio.Task:
    """A pay-in POSTed with `Prefer: wait` that no worker moves, once its row is written (so it waits)."""
    waiting = asyncio.create_task(post_payment(api, settings, user, payin(user), prefer=f"wait={wait_s}"))
    for _ in range(200):
        if (await rows_for(pool, user))[0] == 1:
            break
        await asyncio.sleep(0.02)
    return waiting


async def test_a_user_waits_on_at_most_the_allowed_number_of_requests_at_once(app_with, settings, pool):
    api = await app_with(prefer_wait_per_user_max=1)
    user, other = await payer(api, settings), await payer(api, settings)
    # No worker moves these payments: the first client waits out its 3 s.
    waiting = await start_waiting(api, settings, pool, user, wait_s=3)
    second = await post_payment(api, settings, user, payin(user), prefer="wait=3")
    assert not waiting.done()  # answered while the first still waits: it did not wait
    assert second.status == 202 and second.headers["Preference-Applied"] == "wait=0"
    other_wait = asyncio.create_task(post_payment(api, settings, other, payin(other), prefer="wait=1"))
    first, other_reply = await waiting, await other_wait
    assert first.status == 202 and first.headers["Preference-Applied"] == "wait=3"
    assert other_reply.headers["Preference-Applied"] == "wait=1"  # another user's wait is not capped by this one
    # Once the first wait is over, the user may wait again.
    again = await post_payment(api, settings, user, payin(user), prefer="wait=1")
    assert again.headers["Preference-Applied"] == "wait=1"


async def test_a_web_process_holds_at_most_the_configured_number_of_waiters(app_with, settings, pool):
    api = await app_with(prefer_waiters_max=1)
    user, other = await payer(api, settings), await payer(api, settings)
    # No worker moves these payments: the first client waits out its 3 s and fills the waiter.
    waiting = await start_waiting(api, settings, pool, user, wait_s=3)
    refused = await post_payment(api, settings, other, payin(other), prefer="wait=3")
    assert not waiting.done()  # answered while the first still waits: another user could not wait either
    assert refused.status == 202 and refused.headers["Preference-Applied"] == "wait=0"
    first = await waiting
    assert first.status == 202 and first.headers["Preference-Applied"] == "wait=3"
    again = await post_payment(api, settings, other, payin(other), prefer="wait=1")  # the slot is free again
    assert again.headers["Preference-Applied"] == "wait=1"


async def test_an_unreachable_rate_limit_store_answers_503_and_writes_nothing(app_with, settings, pool):
    api = await app_with(rate_limit_redis_url="redis://127.0.0.1:1/0")
    user = new_user()
    reply = await post_payment(api, settings, user, payin(user))
    assert error_of(reply) == (503, "service_unavailable") and reply.headers["Retry-After"]
    assert await rows_for(pool, user) == (0, 0, 0)


async def test_admission_loads_its_scripts_when_redis_does_not_know_them(migrated):
    """Redis forgets scripts when it restarts: the pipelined checks load them and go on."""
    limits = Velocity(migrated)
    try:
        unknown = _Script(limits._client, limits._admission._text + f"\n-- {uuid.uuid4()}")
        limits._admission = unknown  # a script Redis has never seen, standing in for a flushed one
        await limits.admit(new_user(), f"tok_card_ok{uuid.uuid4().hex[:8]}", field="from_acct")
        assert await limits._client.script_exists(unknown.sha) == [True]
    finally:
        await limits.close()


async def test_admission_is_one_redis_command_counted_exactly_as_the_library_counts(migrated, monkeypatch):
    """The user limit, the instrument limit and the decline window go to Redis as one EVALSHA of
    the library's own scripts: the library reads back what admission wrote, and sees the
    declines it recorded."""
    settings = msgspec.structs.replace(migrated, instrument_declines_max=3)
    limits = Velocity(settings)
    user, token = new_user(), f"tok_card_ok{uuid.uuid4().hex[:8]}"
    sent: list[tuple] = []
    real = limits._client.execute_command

    async def spy(*args, **options):
        sent.append(args)
        return await real(*args, **options)
    try:
        await limits.record_decline(token)
        monkeypatch.setattr(limits._client, "execute_command", spy)
        monkeypatch.setattr(limits._client, "pipeline", None)  # no pipeline: one command
        await limits.admit(user, token, field="from_acct")
        await limits.admit(user, None)
        assert [args[0] for args in sent] == ["EVALSHA", "EVALSHA"], sent
        monkeypatch.undo()
        user_stats = await limits._limiter.get_window_stats(limits.user_limit, user)
        instrument_stats = await limits._limiter.get_window_stats(limits.instrument_limit, token)
        assert user_stats.remaining == settings.rate_user_payments_per_minute - 2
        assert instrument_stats.remaining == settings.rate_instrument_payments_per_minute - 1
        assert await limits.declines(token) == 1
    finally:
        await limits.clear_declines(token)
        await limits.close()
