"""Asking for a reversal: the amount checked and reserved under the order's row lock, the row and
its `reversal.requested` event written in the same transaction; the `reverse` step is sent after
the commit (a lost message is re-driven by the sweeper: the reversal's lease runs out)."""
from __future__ import annotations

import hashlib
import uuid

import asyncpg
import structlog

from paycell.config import Settings
from paycell.errors import (AmountExceedsRemaining, CurrencyMismatch, IdempotencyConflict, NotFound,
                            PaymentNotReversible, ReversalNotSupported)
from paycell.store import payments
from paycell.store import reversals as store
from paycell.workflow import Order

log = structlog.get_logger("paycell.reversals")

# Order states an operator may reverse: a completed payment (its money moved and was posted).
REVERSIBLE = frozenset({"completed"})


def request_sha256(amount_minor: int, currency: str, reason: str) -> bytes:
    """What an operator's Idempotency-Key is bound to: the same key with another body is refused."""
    return hashlib.sha256(f"{amount_minor}\x00{currency}\x00{reason}".encode()).digest()


async def reverse_payment(pool: asyncpg.Pool, settings: Settings, *, user_id: str, payment_id: str,
                          amount_minor: int, currency: str, reason: str, requested_by: str,
                          request_key: str) -> tuple[store.Reversal, bool]:
    """An operator's reversal of a user's completed payment: (the reversal, True when recorded
    now; False when `request_key` named it before with the same body: the same reversal)."""
    sha = request_sha256(amount_minor, currency, reason)
    async with pool.acquire() as conn, conn.transaction():
        order_id = await _order_id(conn, user_id, payment_id)
        order = order_id and await payments.lock_order(conn, user_id, order_id)
        if not order:
            raise NotFound("no such payment")
        earlier = await store.by_request_key(conn, user_id, payment_id, request_key)
        if earlier is not None:
            if earlier.request_sha256 != sha:
                raise IdempotencyConflict("this Idempotency-Key was used for another reversal of this payment")
            return earlier, False
        check(order, amount_minor, currency, *await store.taken_minor(conn, user_id, order.payment_order_id))
        reversal = await store.insert(
            conn, user_id=user_id, reversal_id=str(uuid.uuid4()), payment_id=payment_id,
            order_id=order.payment_order_id, origin="operator", requested_by=requested_by,
            amount_minor=amount_minor, currency=currency, reason=reason, psp=order.psp,
            lease_until=payments.lease(settings.psp_lease_s), request_key=request_key, request_sha256=sha)
    log.info("reversal.requested", reversal_id=reversal.reversal_id, order_id=order.payment_order_id,
             payment_id=payment_id, amount_minor=amount_minor, currency=currency, by=requested_by)
    return reversal, True


def reversible(order: Order) -> bool:
    """Whether `order`'s state lets an operator reverse it at all."""
    return order.kind in ("payin", "payout") and order.payment_order_status in REVERSIBLE and bool(order.psp)


def check(order: Order, amount_minor: int, currency: str, reversed_minor: int, held_minor: int) -> None:
    """Refuse a reversal of `order` (locked) that its state, currency or remaining amount forbid."""
    if not reversible(order):
        raise PaymentNotReversible(f"a {order.kind} in {order.payment_order_status} cannot be reversed; only a "
                                   "completed pay-in or pay-out can")
    if currency != order.currency:
        raise CurrencyMismatch(f"the payment is in {order.currency}, not {currency}", field="currency")
    remaining_minor = order.amount_minor - reversed_minor - held_minor
    if amount_minor > remaining_minor:
        raise AmountExceedsRemaining(f"{remaining_minor} minor units of the payment remain to reverse "
                                     f"({reversed_minor} reversed, {held_minor} being reversed)", field="amount")
    if order.kind == "payout" and amount_minor != order.amount_minor:
        raise ReversalNotSupported("a pay-out is recalled whole, never in part", field="amount")


async def offer(conn: asyncpg.Connection, user_id: str, payment_id: str) -> int | None:
    """What an operator may reverse of a payment as of now, in its minor units (None: nothing), for
    a page to offer; read without a lock, so `reverse_payment` still decides under the order's.
    A pay-out is offered whole or not at all (a recall is whole)."""
    order_id = await _order_id(conn, user_id, payment_id)
    order = order_id and await payments.read_order(conn, user_id, order_id)
    if not order or not reversible(order):
        return None
    reversed_minor, held_minor = await store.taken_minor(conn, user_id, order.payment_order_id)
    remaining_minor = order.amount_minor - reversed_minor - held_minor
    if remaining_minor <= 0 or (order.kind == "payout" and remaining_minor != order.amount_minor):
        return None
    return remaining_minor


async def _order_id(conn: asyncpg.Connection, user_id: str, payment_id: str) -> str | None:
    return await conn.fetchval("SELECT payment_order_id::text FROM payment_order WHERE user_id = $1 "
                               "AND payment_id = $2", user_id, uuid.UUID(payment_id))
