"""Step `psp_succeeded`: the PSP moved the money, so post it to the ledger and the wallet in one
transaction and complete the order. `charge` calls `complete` inline on its happy path (one
commit for outcome and posting); this actor runs it when that inline posting failed, or when
the sweeper finds an order left in `psp_succeeded`."""
from __future__ import annotations

import dramatiq
import structlog

from paycell import postings
from paycell.actors import context
from paycell.actors.broker import PAYMENTS_QUEUE
from paycell.store import payments
from paycell.workflow import Order

log = structlog.get_logger("paycell.step.settle")


async def complete(conn, ctx: context.Context, order: Order, *, milestones=(), **fields) -> None:
    """Post the settlement and move the locked order to `completed` (setting `fields` too)."""
    posting = await postings.settle(conn, order, system_slices=ctx.settings.system_account_slices)
    await payments.move(conn, order, "completed", event="order.posted", data={"transaction_id": posting.transaction_id},
                        milestones=milestones, ledger_updated=True, wallet_updated=True, **fields)


@dramatiq.actor(actor_name="settle", queue_name=PAYMENTS_QUEUE, on_retry_exhausted="record_dead_letter")
async def settle(*ids: str) -> None:
    """`ids`: (user_id, order_id); for one release also (order_id,) (context.order_key)."""
    ctx = context.current()
    key = await context.order_key(ctx, "settle", ids)
    if key is None:
        return
    user_id, order_id = key
    with context.bound(step="settle", user_id=user_id, order_id=order_id):
        async with ctx.pool.acquire() as conn, conn.transaction():
            order = await context.lock_order_in(conn, user_id, order_id, ("psp_succeeded",))
            if order is None:
                return
            await complete(conn, ctx, order)
        log.info("order.completed")

