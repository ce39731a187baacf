"""Recording what a PSP says of a charge, whoever heard it: the `charge` step (the PSP's answer
or a status poll) and the `apply_event` actor (the PSP's webhook) move an order through the
same code, under the order's lock, so the two can race on one order and still post once.

    succeeded        post the settlement and complete (one commit for outcome and posting)
    declined         fail; a pay-out's reserve is released
    pending          psp_pending; `charge` asks again after PAYCELL_PSP_POLL_INTERVAL_MS, doubling per
                     ask up to PAYCELL_PSP_POLL_INTERVAL_MAX_MS; entering it sets the order's deadline
                     to PAYCELL_PSP_PENDING_DEADLINE_S from then, and an ask past it that still finds
                     the charge pending sends the order to needs_attention (a pay-out keeps its reserve)
    requires_action  the customer must act at the provider: keep the redirect URL, wait until
                     `psp_action_deadline_s`, polling every `psp_action_poll_interval_s`; past the
                     deadline, when the provider still says it waits for the customer (nothing
                     was charged), fail with `action_expired`
"""
from __future__ import annotations

import datetime

import dramatiq
import structlog
from limits.errors import StorageError

from paycell import postings
from paycell.actors import context
from paycell.actors.broker import STEP_QUEUES, send
from paycell.actors.settle import complete
from paycell.psp.base import PspResult
from paycell.store import payments
from paycell.config import Settings
from paycell.workflow import PENDING_DEADLINE, Order

log = structlog.get_logger("paycell.step.outcome")

# The states in which paycell waits for a PSP's word on the charge.
ACTIVE = ("psp_submitting", "psp_pending", "requires_action")


async def record_outcome(conn, ctx: context.Context, order: Order, result: PspResult) -> str | int | None:
    """Record the PSP's answer for `order` (locked by the caller, in ACTIVE) in the caller's
    transaction; returns the follow-up for `after_commit` ("declined" when this call failed the
    order on a decline, the wait in ms before asking a pending charge again, or None)."""
    ref = result.psp_reference or None
    if result.status == "succeeded":
        await complete(conn, ctx, order, milestones=(("order.psp_succeeded", {"psp_reference": ref}),),
                       psp_reference=ref)
        return None
    if result.status == "declined":
        await fail(conn, ctx, order, result.decline_code or "declined", ref)
        return "declined"
    if result.status == "requires_action":
        return await _requires_action(conn, ctx, order, result)
    return await _pending(conn, ctx, order, ref)


async def _pending(conn, ctx: context.Context, order: Order, ref: str | None) -> int | None:
    now = datetime.datetime.now(datetime.timezone.utc)
    entering = order.payment_order_status != "psp_pending"
    if not entering and order.deadline_at is not None and order.deadline_at <= now:
        await payments.move(conn, order, "needs_attention", event="order.needs_attention",
                            data={"reason": PENDING_DEADLINE, "psp_reference": ref}, failure_code=PENDING_DEADLINE,
                            psp_reference=ref)
        log.warning("psp.pending_past_deadline", psp_reference=ref)
        return None
    deadline = now + datetime.timedelta(seconds=ctx.settings.psp_pending_deadline_s) if entering else order.deadline_at
    asks = 0 if entering else order.attempt - order.psp_attempt_from + 1
    delay_ms = poll_delay_ms(ctx.settings, asks, until_deadline_s=(deadline - now).total_seconds())
    fields = {"deadline_at": deadline} if entering else {}
    await payments.move(conn, order, "psp_pending", event="order.psp_pending", data={"psp_reference": ref},
                        psp_reference=ref, attempt=order.attempt if entering else order.attempt + 1,
                        lease_until=payments.lease(delay_ms / 1000 + ctx.settings.psp_lease_s), **fields)
    return delay_ms


def poll_delay_ms(settings: Settings, asks: int, *, until_deadline_s: float) -> int:
    """The wait before asking about a pending charge again: the poll interval doubled per ask
    already made, at most the maximum, and never far past the deadline (the ask after it decides)."""
    delay_ms = min(settings.psp_poll_interval_max_ms, settings.psp_poll_interval_ms * 2 ** min(asks, 32))
    return max(1, min(delay_ms, int(until_deadline_s * 1000) + 1))


async def fail(conn, ctx: context.Context, order: Order, code: str, ref: str | None) -> None:
    """Fail the locked order on the PSP's word that nothing was charged; release a pay-out's reserve."""
    milestones = [("order.psp_failed", {"decline_code": code, "psp_reference": ref})]
    if order.kind == "payout":
        posting = await postings.release(conn, order, system_slices=ctx.settings.system_account_slices)
        milestones.append(("order.released", {"transaction_id": posting.transaction_id}))
    await payments.move(conn, order, "failed", event="order.failed", milestones=tuple(milestones),
                        data={"reason": code}, failure_code=code, psp_reference=ref)


async def _requires_action(conn, ctx: context.Context, order: Order, result: PspResult) -> str | None:
    settings = ctx.settings
    ref = result.psp_reference or None
    lease_until = payments.lease(settings.psp_action_poll_interval_s)
    if order.payment_order_status != "requires_action":
        expires_at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
            seconds=settings.psp_action_deadline_s)
        await payments.move(conn, order, "requires_action", event="order.requires_action",
                            data={"psp_reference": ref, "expires_at": expires_at.isoformat()},
                            psp_reference=ref, action_url=result.action_url, action_expires_at=expires_at,
                            lease_until=lease_until)
        return None
    expired = await conn.fetchval("SELECT action_expires_at <= now() FROM payment_order WHERE user_id = $1 "
                                  "AND payment_order_id = $2", order.user_id, order.payment_order_id)
    if expired:
        # The provider has just said it still waits for the customer: nothing was charged.
        await fail(conn, ctx, order, "action_expired", ref)
        return "expired"
    fields = {"action_url": result.action_url} if result.action_url else {}  # a provider may renew it
    await payments.move(conn, order, "requires_action", event="order.requires_action_polled",
                        data={"psp_reference": ref}, psp_reference=ref, lease_until=lease_until, **fields)
    return None


async def record_posting_failed(conn, ctx: context.Context, order: Order, result: PspResult, error: str) -> str:
    """The ledger refused the settlement (the seed's edge cases 6 and 7) after the PSP moved the
    money: keep the PSP's answer alone and let `settle` retry the posting."""
    ref = result.psp_reference or None
    await payments.move(conn, order, "psp_succeeded", event="order.posting_failed",
                        milestones=(("order.psp_succeeded", {"psp_reference": ref}),),
                        data={"error": error[:500]}, psp_reference=ref,
                        lease_until=payments.lease(ctx.settings.psp_lease_s), last_error=error[:500])
    return "settle"


async def after_commit(ctx: context.Context, order: Order, follow_up: str | int | None, instrument: str) -> None:
    """What a recorded outcome calls for once it is committed."""
    if follow_up == "settle":
        send(ctx.broker, "settle", order.user_id, order.payment_order_id)
    elif isinstance(follow_up, int):  # a pending charge: ask again after this many ms
        ctx.broker.enqueue(dramatiq.Message(queue_name=STEP_QUEUES["charge"], actor_name="charge",
                                            args=(order.user_id, order.payment_order_id), kwargs={},
                                            options={}),
                           delay=follow_up)
    elif follow_up == "declined":
        await _count_decline(ctx, instrument)


async def _count_decline(ctx: context.Context, instrument: str) -> None:
    """Feed the instrument's decline count (paycell.velocity), after the decline is committed. The
    count is a guard, not a record: when Redis is unreachable it misses one decline rather than
    fail a step whose outcome is already stored."""
    try:
        await ctx.velocity.record_decline(instrument)
    except StorageError:
        log.warning("velocity.decline_not_counted", instrument=instrument, exc_info=True)
