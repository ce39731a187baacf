"""Redis holds messages and short-lived counters only: once payments are done, nothing of them stays.

What may remain in the broker's database after a payment completes: Dramatiq's queue structures
(without that payment's messages), its heartbeats, the breakers' state per connector, and the
rate-limit windows per user and per instrument, which expire on their own (a TTL of one window).
Dead letters are bounded by Dramatiq's dead-message TTL; none is made here.
"""
from __future__ import annotations

import pytest

from tests.helpers import assert_ledger_clean, final_payment, new_user, pay, register, wait_until

pytestmark = pytest.mark.usefixtures("worker")


def _keys(redis_client) -> list[bytes]:
    return list(redis_client.scan_iter(count=1000))


def _mentions(redis_client, key: bytes, needles: list[bytes]) -> list[bytes]:
    """Which of `needles` the key's name or any of its values holds."""
    kind = redis_client.type(key)
    if kind == b"string":
        values = [redis_client.get(key) or b""]
    elif kind == b"hash":
        values = [f + b" " + v for f, v in redis_client.hgetall(key).items()]
    elif kind == b"zset":
        values = redis_client.zrange(key, 0, -1)
    elif kind == b"set":
        values = list(redis_client.smembers(key))
    elif kind == b"list":
        values = redis_client.lrange(key, 0, -1)
    else:
        values = []
    return [n for n in needles if n in key or any(n in v for v in values)]


async def test_no_per_payment_key_remains_in_redis_after_payments_complete(api, settings, pool, redis_client):
    alice, bob = new_user("redis"), new_user("redis")
    await register(api, settings, bob)
    payments = [
        await pay(api, settings, alice, "tok_card_ok", f"wallet:{alice}", "20.00", "card", wait_s=10),
        await pay(api, settings, alice, f"wallet:{alice}", f"wallet:{bob}", "5.00", "wallet", wait_s=10),
        await pay(api, settings, alice, f"wallet:{alice}", "tok_bank_ok", "3.00", "bank_account", wait_s=10),
        await pay(api, settings, bob, "tok_card_decline", f"wallet:{bob}", "1.00", "card", wait_s=10),
    ]
    ids: list[bytes] = []
    for (status, body), user in zip(payments, (alice, alice, alice, bob)):
        assert status in (201, 202), body
        done = await final_payment(api, settings, user, body["payment_id"])
        assert done["status"] in ("succeeded", "failed"), done
        ids += [body["payment_id"].encode()] + [o["payment_order_id"].encode() for o in done["orders"]]

    async def nothing_of_them_queued():
        return not [k for k in _keys(redis_client) if k.startswith(b"dramatiq:") and _mentions(redis_client, k, ids)]

    # The last step's ack follows its commit by a moment: give the worker that moment.
    assert await wait_until(nothing_of_them_queued, timeout_s=10)
    leftovers = {k: _mentions(redis_client, k, ids) for k in _keys(redis_client)}
    assert {k: v for k, v in leftovers.items() if v} == {}, "keys still naming these payments or orders"
    # What is kept per user (the rate-limit windows) expires on its own.
    for key in _keys(redis_client):
        if alice.encode() in key or bob.encode() in key:
            assert redis_client.ttl(key) > 0, key
    # Nothing else without a TTL but the queues, heartbeats and breakers (bounded by configuration).
    for key in _keys(redis_client):
        if redis_client.ttl(key) == -1:
            assert key.startswith((b"dramatiq:", b"paycell:breaker:")), key
    await assert_ledger_clean(pool)
