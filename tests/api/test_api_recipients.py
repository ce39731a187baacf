"""Transfers only to someone: the payee must be a paycell user (registered on their first
authenticated call) whose wallet is open; otherwise 422 recipient_unknown and nothing written."""
from __future__ import annotations

import asyncpg
import msgspec
import pytest

from paycell.http.app import create_app
from tests.helpers import new_user, payment_body, register
from tests.api.support import WALLET, error_of, get_as, post_payment, rows_for


def transfer(payer: str, payee_ref: str, amount: str = "1.00") -> dict:
    return payment_body(payer, f"wallet:{payer}", payee_ref, amount, "wallet")


@pytest.mark.parametrize("payee", ["ghost", "look-alike"])
async def test_a_transfer_to_a_wallet_nobody_holds_is_refused_and_writes_nothing(api, settings, pool, payee):
    alice, bob = new_user("alice"), new_user("bob")
    await register(api, settings, alice)
    await register(api, settings, bob)
    ref = {"ghost": f"wallet:ghost-{bob}", "look-alike": f"wallet:{bob.replace('bob', 'B0b')}"}[payee]
    reply = await post_payment(api, settings, alice, transfer(alice, ref))
    assert error_of(reply) == (422, "recipient_unknown") and reply.json["error"]["field"] == "to_acct"
    assert await rows_for(pool, alice) == (0, 0, 0)


async def test_a_transfer_to_a_user_who_has_called_the_api_is_accepted(api, settings, pool):
    alice, bob = new_user("alice"), new_user("bob")
    await register(api, settings, bob)
    reply = await post_payment(api, settings, alice, transfer(alice, f"wallet:{bob}"))
    assert reply.status == 202, reply.json
    assert await rows_for(pool, alice) == (1, 1, 1)


async def test_every_authenticated_call_registers_its_caller_with_an_open_wallet(api, settings, pool):
    user = new_user()
    assert await pool.fetchval("SELECT count(*) FROM app_user WHERE user_id = $1", user) == 0
    assert (await get_as(api, settings, user, WALLET)).status == 200
    assert await pool.fetchval("SELECT wallet_status FROM app_user WHERE user_id = $1", user) == "open"


async def test_a_closed_wallet_receives_nothing(api, settings, pool):
    alice, bob = new_user("alice"), new_user("bob")
    await register(api, settings, bob)
    admin = await asyncpg.connect(settings.admin_database_url)
    try:
        await admin.execute("UPDATE app_user SET wallet_status = 'closed' WHERE user_id = $1", bob)
    finally:
        await admin.close()
    reply = await post_payment(api, settings, alice, transfer(alice, f"wallet:{bob}"))
    assert error_of(reply) == (422, "recipient_unknown")
    assert await rows_for(pool, alice) == (0, 0, 0)
    await register(api, settings, bob)  # registering again does not reopen it
    assert await pool.fetchval("SELECT wallet_status FROM app_user WHERE user_id = $1", bob) == "closed"


async def test_a_user_the_lru_forgot_is_registered_again_harmlessly(aiohttp_client, migrated, pool):
    settings = msgspec.structs.replace(migrated, known_users_cache_entries_max=1)
    client = await aiohttp_client(create_app(settings))
    users = [new_user() for _ in range(3)]
    for user in users + users:  # each call evicts the previous user from a one-entry LRU
        assert (await get_as(client, settings, user, WALLET)).status == 200
    assert await pool.fetchval("SELECT count(*) FROM app_user WHERE user_id = ANY($1)", users) == 3
