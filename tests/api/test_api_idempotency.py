"""The checkout UUID makes a POST idempotent per user: the same body replays the first answer,
another body is refused, a duplicate racing a still-waiting first request is told to retry.
Also the read side: the payment list pages through everything once, the wallet shows the ledger."""
from __future__ import annotations

import asyncio

from tests.helpers import assert_ledger_clean, fund_wallet, new_user, wait_until
from tests.api.support import PAYMENTS, WALLET, error_of, get_as, payer, payin, post_payment, rows_for


async def test_the_same_payment_twice_replays_the_first_answer(api, settings, pool):
    user = await payer(api, settings)
    body = payin(user)
    first = await post_payment(api, settings, user, body)
    second = await post_payment(api, settings, user, body)
    assert first.status == second.status == 202
    assert "Idempotent-Replayed" not in first.headers and second.headers["Idempotent-Replayed"] == "true"
    assert second.json == first.json
    assert second.headers["Location"] == first.headers["Location"] == f"{PAYMENTS}/{body['payment_id']}"
    assert await rows_for(pool, user) == (1, 1, 1)


async def test_the_same_payment_id_with_another_amount_is_refused(api, settings, pool):
    user = await payer(api, settings)
    body = payin(user, amount="10.00")
    assert (await post_payment(api, settings, user, body)).status == 202
    reply = await post_payment(api, settings, user, body | {"amount": "10.01"})
    assert error_of(reply) == (422, "idempotency_key_reused")
    assert reply.json["error"]["field"] == "payment_id"
    stored = await get_as(api, settings, user, f"{PAYMENTS}/{body['payment_id']}")
    assert stored.json["amount"] == "10.00"
    assert await rows_for(pool, user) == (1, 1, 1)


async def test_twenty_concurrent_identical_payments_make_one_payment(api, settings, pool):
    user = await payer(api, settings)
    body = payin(user)
    replies = await asyncio.gather(*(post_payment(api, settings, user, body) for _ in range(20)))
    fresh = [r for r in replies if "Idempotent-Replayed" not in r.headers]
    assert len(fresh) == 1 and fresh[0].status == 202
    for reply in replies:
        if reply is fresh[0]:
            continue
        if reply.status == 409:
            assert error_of(reply) == (409, "idempotency_key_in_use")
        else:
            assert (reply.status, reply.headers["Idempotent-Replayed"], reply.json) == (202, "true", fresh[0].json)
    assert await rows_for(pool, user) == (1, 1, 1)


async def test_a_duplicate_while_the_first_waits_is_in_use_and_later_replays_its_answer(api, settings, pool):
    user = await payer(api, settings)
    body = payin(user)
    first = asyncio.create_task(post_payment(api, settings, user, body, prefer="wait=2"))
    assert await wait_until(lambda: _stored(pool, user), timeout_s=10)  # the first holds the key now
    duplicate = await post_payment(api, settings, user, body)
    assert error_of(duplicate) == (409, "idempotency_key_in_use")
    assert duplicate.json["error"]["field"] == "payment_id"
    answered = await first  # no worker runs here: nothing completes, so the full wait ends in 202
    assert answered.status == 202 and answered.headers["Preference-Applied"] == "wait=2"
    assert answered.json["payment_id"] == body["payment_id"] and answered.json["status"] == "processing"
    third = await post_payment(api, settings, user, body)
    assert (third.status, third.headers["Idempotent-Replayed"], third.json) == (202, "true", answered.json)
    assert await rows_for(pool, user) == (1, 1, 1)


async def _stored(pool, user: str) -> bool:
    return (await rows_for(pool, user))[0] == 1


async def test_the_list_pages_through_every_payment_once_newest_first(api, settings):
    user = await payer(api, settings)
    created = []
    for n in range(5):
        reply = await post_payment(api, settings, user, payin(user, amount=f"{n + 1}.00"))
        created.append(reply.json["payment_id"])
    seen, pages, path = [], [], f"{PAYMENTS}?limit=2"
    while path:
        page = await get_as(api, settings, user, path)
        assert page.status == 200 and page.json["object"] == "list"
        pages.append(len(page.json["data"]))
        seen += [p["payment_id"] for p in page.json["data"]]
        assert all(p["user_id"] == user and p["orders"] for p in page.json["data"])
        cursor = page.json["next_cursor"]
        assert page.json["has_more"] == (cursor is not None)
        path = f"{PAYMENTS}?limit=2&starting_after={cursor}" if cursor else None
    assert pages == [2, 2, 1]
    assert seen == created[::-1]


async def test_the_list_defaults_to_twenty(api, settings):
    user = await payer(api, settings)
    for _ in range(21):
        await post_payment(api, settings, user, payin(user))
    page = await get_as(api, settings, user, PAYMENTS)
    assert len(page.json["data"]) == 20 and page.json["has_more"] is True


async def test_the_wallet_shows_what_the_ledger_holds(api, settings, pool, book):
    user = new_user()
    await fund_wallet(pool, book, user, 123_45)
    reply = await get_as(api, settings, user, WALLET)
    assert reply.status == 200
    assert reply.json == {"object": "wallet", "user_id": user, "account": f"wallet:{user}",
                          "balances": [{"currency": "USD", "available": "123.45", "reserved": "0.00"}]}
    empty = await get_as(api, settings, new_user(), WALLET)
    assert empty.json["balances"] == []
    await assert_ledger_clean(pool)
