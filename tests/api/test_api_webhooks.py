"""`POST /psp/webhooks/{connector}` over real HTTP: verify in the connector's scheme, store each
event once, answer the provider fast, send the apply actor after commit (issue 7).

The app here sends to a Redis database no worker listens on (tests/api/conftest.py), so what it
enqueued can be counted; applying is tested with a worker in tests/test_webhook_flows.py."""
from __future__ import annotations

import uuid

import msgspec
import pytest
import redis

from paycell.psp.registry import CONNECTORS
from tests.api.conftest import parked
from tests.api.support import call, error_of
from tests.helpers import SIM_SIGNATURE_HEADER, sim_event, sim_signature
from tests.helpers import lock_by_id

HOOK = "/psp/webhooks/test"


def _apply_messages(settings) -> list[tuple]:
    """The apply_event messages waiting in the (parked) payments queue."""
    client = redis.Redis.from_url(parked_url(settings))
    found = []
    for raw in client.hvals("dramatiq:payments.msgs"):
        message = msgspec.json.decode(raw)
        if message["actor_name"] == "apply_event":
            found.append(tuple(message["args"]))
    client.close()
    return found


def parked_url(settings) -> str:
    base, _, db = settings.redis_url.rpartition("/")
    return f"{base}/{int(db) + 2}"


async def _deliver(api, settings, body: bytes, *, signature: str | None = None, content_type="application/json",
                   path: str = HOOK):
    headers = {"Content-Type": content_type,
               SIM_SIGNATURE_HEADER: signature or sim_signature(settings.psp_sim_webhook_secret, body)}
    async with api.post(path, data=body, headers=headers) as resp:
        return resp.status, await resp.read()


async def _stored(pool, event_id: str) -> int:
    return await pool.fetchval("SELECT count(*) FROM psp_event WHERE connector = 'test' AND event_id = $1",
                               event_id)


async def test_a_signed_delivery_is_stored_once_answered_and_sent_to_the_apply_actor(api, migrated, pool):
    order_id, event_id = str(uuid.uuid4()), f"evt_{uuid.uuid4().hex}"
    body = sim_event(order_id, "paid", event_id=event_id)
    status, answer = await _deliver(api, migrated, body)
    assert (status, answer) == (200, b'{"received": true}')
    row = await pool.fetchrow("""SELECT kind, type, payment_order_id::text, psp_reference, raw_body, event, applied_at
                                   FROM psp_event WHERE connector = 'test' AND event_id = $1""", event_id)
    assert row["kind"] == "outcome" and row["type"] == "charge.paid" and row["payment_order_id"] == order_id
    assert row["raw_body"] == body and row["applied_at"] is None
    assert row["event"]["result"]["status"] == "succeeded"
    assert _apply_messages(migrated).count(("test", event_id)) == 1


async def test_a_replayed_delivery_answers_2xx_and_sends_again_only_while_unapplied(api, migrated, pool):
    body = sim_event(str(uuid.uuid4()), "processing")
    event_id = msgspec.json.decode(body)["id"]
    assert (await _deliver(api, migrated, body))[0] == 200
    assert (await _deliver(api, migrated, body))[0] == 200  # the provider retried: not applied yet, sent again
    assert await _stored(pool, event_id) == 1
    assert _apply_messages(migrated).count(("test", event_id)) == 2
    # Once applied, a replay changes nothing and sends nothing.
    await pool.execute("""UPDATE psp_event SET applied_at = now(), result = 'ignored'
                           WHERE connector = 'test' AND event_id = $1""", event_id)
    assert (await _deliver(api, migrated, body))[0] == 200
    assert _apply_messages(migrated).count(("test", event_id)) == 2
    assert await _stored(pool, event_id) == 1


@pytest.mark.parametrize("forgery", ["wrong_secret", "stale", "future", "tampered_body", "no_signature", "garbage"])
async def test_a_forged_or_stale_delivery_is_refused_and_stores_nothing(api, migrated, pool, forgery, caplog):
    body = sim_event(str(uuid.uuid4()), "paid")
    event_id = msgspec.json.decode(body)["id"]
    secret = migrated.psp_sim_webhook_secret
    signature = {
        "wrong_secret": sim_signature("whsec_not_the_secret", body),
        "stale": sim_signature(secret, body, timestamp_s=int(__import__("time").time()) - 3_600),
        "future": sim_signature(secret, body, timestamp_s=int(__import__("time").time()) + 3_600),
        "tampered_body": sim_signature(secret, body.replace(b'"paid"', b'"refused"')),
        "no_signature": "t=,v1=",
        "garbage": "v1=deadbeef",
    }[forgery]
    status, answer = await _deliver(api, migrated, body, signature=signature)
    assert status == 400
    assert msgspec.json.decode(answer)["error"]["code"] == "webhook_rejected"
    assert await _stored(pool, event_id) == 0
    assert ("test", event_id) not in _apply_messages(migrated)


async def test_an_authentic_but_unreadable_delivery_is_refused(api, migrated, pool):
    body = b'{"id": "evt_x", "type": "charge.paid"}'  # signed, but no charge in it
    status, answer = await _deliver(api, migrated, body)
    assert status == 400 and msgspec.json.decode(answer)["error"]["code"] == "webhook_rejected"
    assert await _stored(pool, "evt_x") == 0


async def test_an_unknown_connector_is_404_in_paycells_error_shape(api):
    reply = await call(api, "POST", "/psp/webhooks/nosuchpsp", json={"id": "evt_1"})
    assert error_of(reply) == (404, "not_found")
    assert "nosuchpsp" not in CONNECTORS


async def test_a_delivery_that_is_not_json_is_415(api, migrated):
    status, answer = await _deliver(api, migrated, b"id=evt_1", content_type="application/x-www-form-urlencoded")
    assert status == 415 and msgspec.json.decode(answer)["error"]["code"] == "unsupported_media_type"


async def test_a_delivery_over_the_body_cap_is_413_and_stores_nothing(aiohttp_client, migrated, pool):
    from paycell.http.app import create_app

    api = await aiohttp_client(create_app(parked(migrated, psp_webhook_body_bytes_max=1_024,
                                                 http_body_bytes_max=64_000)))
    body = sim_event(str(uuid.uuid4()), "paid", reference="ch_" + "x" * 2_000)
    status, answer = await _deliver(api, migrated, body)
    assert status == 413 and msgspec.json.decode(answer)["error"]["code"] == "payload_too_large"
    assert await _stored(pool, msgspec.json.decode(body)["id"]) == 0


async def test_the_webhook_cap_is_its_own_not_the_apis(aiohttp_client, migrated, pool):
    """A delivery larger than the API's body cap but within the webhook's is read and stored."""
    from paycell.http.app import create_app

    api = await aiohttp_client(create_app(parked(migrated, http_body_bytes_max=1_024)))
    body = sim_event(str(uuid.uuid4()), "paid", reference="ch_" + "y" * 200, type_="charge.updated")
    body = body[:-1] + b', "padding": "' + b"z" * 4_000 + b'"}'
    status, _ = await _deliver(api, migrated, body)
    assert status == 200
    assert await _stored(pool, msgspec.json.decode(body)["id"]) == 1


async def test_the_webhook_route_needs_no_bearer_token_but_the_api_still_does(api, migrated):
    body = sim_event(str(uuid.uuid4()), "processing")
    assert (await _deliver(api, migrated, body))[0] == 200
    reply = await call(api, "GET", "/payments/wallet/v1")
    assert error_of(reply) == (401, "unauthenticated")


async def test_an_authentic_event_the_inbox_cannot_hold_is_refused_whole(api, migrated, pool):
    body = sim_event(str(uuid.uuid4()), "paid", event_id="evt_" + "x" * 300)
    status, answer = await _deliver(api, migrated, body)
    assert status == 400 and msgspec.json.decode(answer)["error"]["code"] == "invalid_request"
    assert await pool.fetchval("SELECT count(*) FROM psp_event WHERE event_id LIKE 'evt_xxxx%'") == 0


# -- the customer's return from the provider (GET /payments/return) --

async def _waiting_order(pool) -> tuple[str, str]:
    """(user id, order id) of an order in requires_action."""
    from paycell.store import payments
    from tests.helpers import new_order, new_user

    user = new_user()
    async with pool.acquire() as conn, conn.transaction():
        order_id = await new_order(conn, user, "payin", 3_00)
        order = await lock_by_id(conn, order_id)
        await payments.move(conn, order, "psp_submitting", event="order.psp_submitting", psp="test")
        await payments.move(conn, order, "requires_action", event="order.requires_action",
                            action_url="http://127.0.0.1:1/authorize")
    return user, order_id


def _charge_messages(settings) -> list[tuple]:
    client = redis.Redis.from_url(parked_url(settings))
    found = [tuple(m["args"]) for m in map(msgspec.json.decode, client.hvals("dramatiq:payments.msgs"))
             if m["actor_name"] == "charge"]
    client.close()
    return found


async def test_the_customers_return_asks_the_provider_for_an_order_waiting_for_them(api, migrated, pool):
    user, order_id = await _waiting_order(pool)
    reply = await call(api, "GET", f"/payments/return?user_id={user}&order_id={order_id}&token=EC-123&PayerID=X")
    assert reply.status == 200 and reply.json == {"object": "payment_return", "received": True}  # no bearer
    assert _charge_messages(migrated) == [(user, order_id)]


async def test_a_return_url_without_the_user_finds_the_orders_owner(api, migrated, pool):
    """A return URL issued before it carried the user: the owner is looked up, `charge` gets the key."""
    user, order_id = await _waiting_order(pool)
    reply = await call(api, "GET", f"/payments/return?order_id={order_id}")
    assert reply.status == 200 and reply.json == {"object": "payment_return", "received": True}
    assert _charge_messages(migrated) == [(user, order_id)]


async def test_a_return_naming_another_user_sends_nothing(api, migrated, pool):
    """The user id in the URL only routes the read: with another user's id the order is not found
    (the same answer as for any order) and nothing is sent."""
    _, order_id = await _waiting_order(pool)
    reply = await call(api, "GET", f"/payments/return?user_id=someone-else&order_id={order_id}")
    assert reply.status == 200 and reply.json == {"object": "payment_return", "received": True}
    assert _charge_messages(migrated) == []
    assert error_of(await call(api, "GET", f"/payments/return?user_id=a%20b&order_id={order_id}")) == (
        400, "invalid_request")


async def test_the_return_page_says_the_same_for_any_order_and_sends_nothing_for_others(api, migrated):
    reply = await call(api, "GET", f"/payments/return?order_id={uuid.uuid4()}")
    assert reply.status == 200 and reply.json == {"object": "payment_return", "received": True}
    assert _charge_messages(migrated) == []
    assert error_of(await call(api, "GET", "/payments/return?order_id=nope")) == (400, "invalid_request")


@pytest.mark.parametrize("state, amount_minor, fast", [
    ("paid", 7_00, True),       # the success the order already records: stored applied, nothing sent
    ("refused", 7_00, False),   # a contradiction: the apply actor decides, under the order's lock
    ("paid", 7_01, False),      # another amount: the apply actor decides
])
async def test_an_outcome_its_order_already_records_is_stored_applied_and_sent_to_nobody(
        api, migrated, pool, state, amount_minor, fast):
    from tests.helpers import new_order, new_user, settle_payin
    async with pool.acquire() as conn, conn.transaction():
        order_id = await new_order(conn, new_user("agrees"), "payin", 7_00)
        await settle_payin(conn, order_id)
    body = sim_event(order_id, state, amount_minor=amount_minor)
    event_id = msgspec.json.decode(body)["id"]
    assert (await _deliver(api, migrated, body))[0] == 200
    row = await pool.fetchrow("""SELECT applied_at, result, applied_order_id::text FROM psp_event
                                  WHERE connector = 'test' AND event_id = $1""", event_id)
    if fast:
        assert (row["result"], row["applied_order_id"]) == ("agrees", order_id) and row["applied_at"] is not None
        assert ("test", event_id) not in _apply_messages(migrated)
    else:
        assert row["applied_at"] is None
        assert _apply_messages(migrated).count(("test", event_id)) == 1
    from tests.helpers import assert_ledger_clean
    await assert_ledger_clean(pool)
