"""The operator API of the review queue: only operators (a user's token is 403 on every route),
claims that conflict, a resolution that is final, no operator resolving their own payment."""
from __future__ import annotations

import uuid

import pytest

from tests.helpers import assert_ledger_clean, auth_header, final_payment, new_user, operator_header
from tests.review.conftest import CLAIM_S
from tests.review.support import act, item_of, operator, park

ROUTES = [("GET", "/reviews"), ("GET", "/reviews/{id}"), ("POST", "/reviews/{id}/claim"),
          ("POST", "/reviews/{id}/approve"), ("POST", "/reviews/{id}/decline")]


@pytest.mark.parametrize("method,path", ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
async def test_a_user_token_is_forbidden_on_every_route(review_api, review_settings, pool, method, path):
    api, settings = review_api, review_settings
    user = new_user("payer")
    payment_id, item = await park(api, settings, pool, user, "payin")
    for who in (user, new_user("other")):  # the payer, or any other user
        resp = await api.request(method, path.format(id=item.review_id), headers=auth_header(settings, who),
                                 **({"json": {"note": "x"}} if method == "POST" else {}))
        body = await resp.json()
        assert resp.status == 403 and body["error"]["code"] == "forbidden", body
    resp = await api.request(method, path.format(id=item.review_id))
    assert resp.status == 401
    assert (await item_of(pool, user, payment_id)).state == "open"
    # Leave nothing parked behind: decline it (the item is open, so no refund question arises).
    assert (await act(api, settings, item.review_id, "decline", operator()))[0] == 200
    await assert_ledger_clean(pool)


async def test_claims_conflict_until_they_lapse_and_a_resolution_is_final(review_api, review_settings, pool, owner):
    api, settings = review_api, review_settings
    user, alice, bob = new_user("payer"), operator("alice"), operator("bob")
    payment_id, item = await park(api, settings, pool, user, "payin")

    status, body = await act(api, settings, item.review_id, "claim", alice)
    assert status == 200 and body["state"] == "claimed" and body["claimed_by"] == alice and body["claimed_at"]
    status, body = await act(api, settings, item.review_id, "claim", bob)
    assert status == 409 and body["error"]["code"] == "review_claimed" and alice in body["error"]["message"]
    for action in ("approve", "decline"):
        status, body = await act(api, settings, item.review_id, action, bob)
        assert status == 409 and body["error"]["code"] == "review_claimed"
    status, body = await act(api, settings, item.review_id, "claim", alice)  # renewing one's own claim
    assert status == 200 and body["claimed_by"] == alice

    # alice's claim lapses (the test moves its clock, not the test's: no sleeping): bob may take it over
    await owner.execute("UPDATE review_item SET claimed_at = claimed_at - make_interval(secs => $2) "
                        "WHERE review_id = $1", uuid.UUID(item.review_id), float(CLAIM_S + 1))
    status, body = await act(api, settings, item.review_id, "claim", bob)
    assert status == 200 and body["claimed_by"] == bob
    status, body = await act(api, settings, item.review_id, "decline", bob, note="stolen card")
    assert status == 200 and body["state"] == "declined" and body["resolved_by"] == bob

    for who, action in ((alice, "approve"), (bob, "approve"), (bob, "decline"), (alice, "claim")):
        status, body = await act(api, settings, item.review_id, action, who)
        assert status == 409 and body["error"]["code"] == "review_resolved", (who, action, body)
    done = await final_payment(api, settings, user, payment_id)
    assert done["status"] == "failed" and done["failure_code"] == "review_declined"
    claims = await pool.fetch("SELECT data FROM event WHERE payment_id = $1 AND type = 'review.claimed' "
                              "ORDER BY event_id", uuid.UUID(payment_id))
    assert [c["data"]["by"] for c in claims] == [alice, alice, bob]
    await assert_ledger_clean(pool)


async def test_an_unclaimed_item_may_be_resolved_without_a_claim(review_api, review_settings, pool):
    api, settings = review_api, review_settings
    user = new_user("payer")
    payment_id, item = await park(api, settings, pool, user, "payin")
    status, body = await act(api, settings, item.review_id, "approve", operator())
    assert status == 200 and body["state"] == "approved" and body["claimed_by"] is None
    assert (await final_payment(api, settings, user, payment_id))["status"] == "succeeded"
    await assert_ledger_clean(pool)


async def test_an_operator_cannot_review_their_own_payment(review_api, review_settings, pool):
    api, settings = review_api, review_settings
    user = new_user("ops-payer")  # an operator who is also a customer
    payment_id, item = await park(api, settings, pool, user, "payin")
    for action in ("claim", "approve", "decline"):
        status, body = await act(api, settings, item.review_id, action, user)
        assert status == 403 and body["error"]["code"] == "review_own_payment", (action, body)
    assert (await item_of(pool, user, payment_id)).state == "open"
    status, body = await act(api, settings, item.review_id, "decline", operator())
    assert status == 200
    await assert_ledger_clean(pool)


async def test_the_queue_lists_open_items_oldest_first_a_page_at_a_time(review_api, review_settings, pool):
    api, settings = review_api, review_settings
    ops = operator()
    parked = [(await park(api, settings, pool, new_user("payer"), "payin"))[1] for _ in range(3)]
    headers = operator_header(settings, ops)
    seen, cursor = [], None
    while True:
        query = {"state": "open", "limit": "2", **({"starting_after": cursor} if cursor else {})}
        resp = await api.get("/reviews", headers=headers, params=query)
        body = await resp.json()
        assert resp.status == 200, body
        assert len(body["data"]) <= 2 and all(r["state"] == "open" for r in body["data"])
        seen += body["data"]
        if not body["has_more"]:
            break
        cursor = body["next_cursor"]
    created = [r["created_at"] for r in seen]
    assert created == sorted(created)
    ids = [r["review_id"] for r in seen]
    assert [i for i in ids if i in {p.review_id for p in parked}] == [p.review_id for p in parked]
    # A cursor is bound to the state it listed; a forged one and a bad state are 400.
    for query in ({"state": "declined", "starting_after": body["next_cursor"] or cursor or "x"},
                  {"starting_after": "abc.def"}, {"state": "nope"}, {"limit": "0"}, {"color": "red"}):
        resp = await api.get("/reviews", headers=headers, params=query)
        assert resp.status == 400, (query, await resp.json())
    for p in parked:
        assert (await act(api, settings, p.review_id, "decline", ops))[0] == 200
    resp = await api.get("/reviews", headers=headers, params={"state": "declined", "limit": "100"})
    assert resp.status == 200
    await assert_ledger_clean(pool)


async def test_unknown_ids_and_bad_bodies_are_answered_not_500(review_api, review_settings, pool):
    api, settings = review_api, review_settings
    headers = operator_header(settings, operator())
    for path in (f"/reviews/{uuid.uuid4()}", "/reviews/not-a-uuid"):
        resp = await api.get(path, headers=headers)
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
        resp = await api.post(path + "/approve", headers=headers)
        assert resp.status == 404
    user = new_user("payer")
    _, item = await park(api, settings, pool, user, "payin")
    for kwargs in ({"json": {"note": "x" * 2_001}}, {"json": {"reason": "x"}}, {"json": ["x"]},
                   {"data": b"{", "headers": {"Content-Type": "application/json"}}):
        headers_ = {**headers, **kwargs.pop("headers", {})}
        resp = await api.post(f"/reviews/{item.review_id}/decline", headers=headers_, **kwargs)
        assert resp.status == 400, await resp.json()
    resp = await api.post(f"/reviews/{item.review_id}/decline", headers=headers, data=b"note",
                          )
    assert resp.status in (400, 415)
    assert (await item_of(pool, user, item.payment_id)).state == "open"
    assert (await act(api, settings, item.review_id, "decline", operator()))[0] == 200
    await assert_ledger_clean(pool)
