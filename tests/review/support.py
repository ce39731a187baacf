"""Helpers of the review queue's tests: a payment parked by the default rules, its item."""
from __future__ import annotations

import uuid

from paycell.store import reviews as store
from tests.helpers import auth_header, operator_header, pay, wait_until

PARKED_AMOUNT = "600.00"  # over 500.00 USD on an instrument attached just now: "new instrument, large amount"
CARD = "tok_card_ok"


def operator(prefix: str = "ops") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def item_of(pool, user_id: str, payment_id: str) -> store.Item | None:
    row = await pool.fetchrow("SELECT review_id::text, payment_order_id::text FROM review_item "
                              "WHERE user_id = $1 AND payment_id = $2", user_id, uuid.UUID(payment_id))
    if row is None:
        return None
    async with pool.acquire() as conn:
        return await store.get(conn, user_id, row["review_id"])


async def park(api, settings, pool, user_id: str, kind: str, amount: str = PARKED_AMOUNT) -> tuple[str, store.Item]:
    """POST a pay-in or pay-out of `amount` through the API and wait until the worker parked it;
    returns (payment id, its review item)."""
    wallet = f"wallet:{user_id}"
    from_acct, to_acct = (CARD, wallet) if kind == "payin" else (wallet, CARD)
    status, body = await pay(api, settings, user_id, from_acct, to_acct, amount, "card")
    assert status == 202, body
    payment_id = body["payment_id"]
    item = await wait_until(lambda: item_of(pool, user_id, payment_id))
    assert item is not None, f"payment {payment_id} was not parked"
    order_state = await wait_until(lambda: _state_if_parked(pool, item.payment_order_id))
    assert order_state == "in_review"
    return payment_id, item


async def _state_if_parked(pool, order_id: str) -> str | None:
    state = await pool.fetchval("SELECT payment_order_status FROM payment_order WHERE payment_order_id = $1",
                                uuid.UUID(order_id))
    return state if state == "in_review" else None


async def order_state(pool, order_id: str) -> str:
    return await pool.fetchval("SELECT payment_order_status FROM payment_order WHERE payment_order_id = $1",
                               uuid.UUID(order_id))


async def event_types(pool, order_id: str) -> list[str]:
    rows = await pool.fetch("SELECT type FROM event WHERE payment_order_id = $1 ORDER BY event_id",
                            uuid.UUID(order_id))
    return [r["type"] for r in rows]


async def act(api, settings, review_id: str, action: str, who: str, note: str | None = None,
              *, as_user: bool = False):
    """POST /reviews/{id}/{action} as operator `who` (or, as_user, with a user's token)."""
    headers = auth_header(settings, who) if as_user else operator_header(settings, who)
    kwargs = {"json": {"note": note}} if note is not None else {}
    resp = await api.post(f"/reviews/{review_id}/{action}", headers=headers, **kwargs)
    return resp.status, await resp.json()
