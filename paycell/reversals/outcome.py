"""Recording what a PSP said of a reversal, under the order's lock then the reversal's (the lock
order every writer of a reversal keeps), in one transaction:

    succeeded  post the compensating transaction (post_reversal: nothing when nothing of the
               payment was posted), mark the reversal succeeded; the payment shows what was taken
               back (`refunded`, status partially_refunded / refunded / reversed); an order the
               policy was reversing becomes `reversed`
    failed     the PSP refused: nothing moved, its amount remains reversible; an order the policy
               was reversing goes to needs_attention (a human decides)
    pending    the PSP accepted it and says later: the reversal keeps its state, its lease says
               when the sweeper sends `reverse` again (which asks the PSP's status), the wait
               doubling per attempt from PAYCELL_PSP_POLL_INTERVAL_MS up to _MAX_MS
    gave up    its step's retries ran out with the outcome unknown: needs_attention, and the
               order too when the policy was reversing it
"""
from __future__ import annotations

import asyncpg
import structlog

from paycell import workflow
from paycell.config import Settings
from paycell.money import format_amount
from paycell.psp.base import ReversalResult
from paycell.store import payments
from paycell.store import reversals as store
from paycell.workflow import Order

log = structlog.get_logger("paycell.reversals.outcome")


async def lock(conn: asyncpg.Connection, user_id: str, reversal_id: str) -> tuple[Order | None, store.Reversal | None]:
    """The reversal's order and the reversal, locked in that order (None, None when unknown)."""
    order_id = await store.order_of(conn, user_id, reversal_id)
    if order_id is None:
        return None, None
    order = await payments.lock_order(conn, user_id, order_id)
    return order, await store.lock(conn, user_id, reversal_id)


async def record(conn: asyncpg.Connection, settings: Settings, order: Order, reversal: store.Reversal,
                 result: ReversalResult) -> None:
    """Record `result` for `reversal` (psp_submitting) and its `order`, both locked by the caller."""
    ref = result.psp_reference or None
    if result.status == "succeeded":
        transaction_id = await store.post(conn, reversal, system_slices=settings.system_account_slices)
        await store.move(conn, reversal, "succeeded", event="reversal.succeeded",
                         data={"psp_reference": ref, "amount_minor": reversal.amount_minor,
                               "amount": format_amount(reversal.amount_minor, reversal.currency),
                               "currency": reversal.currency, "transaction_id": transaction_id},
                         psp_reference=ref, lease_until=None)
        await _show_on_payment(conn, order)
        log.info("reversal.succeeded", reversal_id=reversal.reversal_id, transaction_id=transaction_id)
    elif result.status == "failed":
        await fail(conn, order, reversal, result.failure_code or "reversal_failed", ref=ref)
    else:  # asked again when the lease runs out, waiting longer each time (an ACH credit takes a day)
        wait_ms = min(settings.psp_poll_interval_max_ms, settings.psp_poll_interval_ms * 2 ** min(reversal.attempt, 32))
        await store.move(conn, reversal, "psp_submitting", event="reversal.psp_pending",
                         data={"psp_reference": ref}, psp_reference=ref,
                         lease_until=payments.lease(settings.psp_lease_s + wait_ms / 1000))


async def fail(conn: asyncpg.Connection, order: Order, reversal: store.Reversal, code: str, *,
               ref: str | None = None, error: str | None = None) -> None:
    """The PSP refused the reversal (or cannot do it): nothing moved."""
    await store.move(conn, reversal, "failed", event="reversal.failed", data={"reason": code, "psp_reference": ref},
                     failure_code=code[:100], lease_until=None, **({"last_error": error[:500]} if error else {}))
    if order.payment_order_status == "reversing":
        await payments.move(conn, order, "needs_attention", event="order.needs_attention",
                            data={"reason": "reversal_failed", "reversal_id": reversal.reversal_id},
                            failure_code="reversal_failed")
    log.warning("reversal.failed", reversal_id=reversal.reversal_id, code=code)


async def give_up(conn: asyncpg.Connection, order: Order, reversal: store.Reversal, error: str) -> None:
    """The step's retries ran out and the PSP's answer is unknown: a human finds out."""
    if reversal.state not in workflow.REVERSAL_LIVE:
        return
    await store.move(conn, reversal, "needs_attention", event="reversal.needs_attention",
                     data={"reason": "retries_exhausted", "error": error[:500]}, failure_code="retries_exhausted",
                     last_error=error[:500], lease_until=None)
    if order.payment_order_status == "reversing":
        await payments.move(conn, order, "needs_attention", event="order.needs_attention",
                            data={"reason": "reversal_unknown", "reversal_id": reversal.reversal_id},
                            failure_code="reversal_unknown")


async def reopen(conn: asyncpg.Connection, settings: Settings, user_id: str, reversal_id: str, *, reason: str) -> bool:
    """Put a reversal that needs attention back to `psp_submitting` (its dead letter replayed by an
    operator); the `reverse` step then asks the PSP first, as after any unknown outcome. An order
    the policy was reversing goes back to `reversing` with it. False when there is nothing to reopen."""
    order, reversal = await lock(conn, user_id, reversal_id)
    if order is None or reversal is None or reversal.state != "needs_attention":
        return False
    await store.move(conn, reversal, "psp_submitting", event="reversal.reopened", data={"reason": reason},
                     lease_until=payments.lease(settings.psp_lease_s), failure_code=None)
    if reversal.origin == "policy" and order.payment_order_status == "needs_attention":
        await payments.move(conn, order, "reversing", event="order.reopened", data={"reason": reason},
                            failure_code="posting_failed")
    return True


async def _show_on_payment(conn: asyncpg.Connection, order: Order) -> None:
    if order.payment_order_status == "reversing":
        await payments.move(conn, order, "reversed", event="order.reversed")
    reversed_minor, _ = await store.taken_minor(conn, order.user_id, order.payment_order_id)
    status = ("reversed" if order.payment_order_status == "reversed"
              else workflow.reversed_status(order.kind, order.amount_minor, reversed_minor))
    await store.set_payment_reversed(conn, order.user_id, order.payment_id, reversed_minor, status)
