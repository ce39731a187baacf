"""The catalogue's automatic fixes, and the queue for everything else.

Each break is settled in its own transaction: the order it is about is locked first (the order,
then the break: the steps' lock order), the condition is checked again under the lock (a step may
have moved the order since the break was found: then nothing is left to fix and the break is
settled `already_consistent`), and the fix is a new ledger transaction through a justified
posting path (post_order, post_recon_release) plus an event in the payment's log
(`order.reconciled`: the break, its kind, the fix). No row of the ledger is ever edited.

A fix the ledger refuses (its guard says the order does not justify it: a typed ledger error, or
the CHECK violation of post_recon_release) is not retried blindly:
the break is queued for a human with the refusal in its evidence. Breaks of kinds without a safe
fix are queued: one review item per break subject (`recon:<connector>` owns it), whatever the
number of runs that find it.
"""
from __future__ import annotations

import datetime

import asyncpg
import structlog

from paycell import postings
from paycell.actors import outcome, settle
from paycell.actors.broker import send
from paycell.actors.context import Context
from paycell.errors import PaycellError
from paycell.psp.base import PspResult
from paycell.reconcile import catalogue
from paycell.store import events, payments
from paycell.store import reconcile as store
from paycell.workflow import Order

log = structlog.get_logger("paycell.reconcile.fixes")

FIX_BATCH_MAX = 10_000
BREAK_VIEW_MAX = 1_000  # breaks shown with a run report
REVIEW_EXPIRY_DAYS = 365  # a reconciliation item waits for a human; it does not expire into a decision
ACTIVE = outcome.ACTIVE
UNKNOWN_OUTCOME = frozenset({"deadline_exceeded", "retries_exhausted", "psp_pending_deadline"})


class NotFixable(Exception):
    """The break's fix does not apply to what its subject is now: a human looks at it."""


async def settle_run(ctx: Context, owner: str, run_id: str, *, limit: int = FIX_BATCH_MAX) -> tuple[int, int]:
    """Fix or queue every break of the run still `found`; returns (fixed, queued)."""
    async with ctx.pool.acquire() as conn:
        found = await store.pending(conn, owner, run_id, limit=limit)
    return await settle(ctx, found)


async def settle_leftovers(ctx: Context, *, older_than_s: float, limit: int = FIX_BATCH_MAX) -> tuple[int, int]:
    """Breaks an earlier run left `found` (it stopped, or found more than FIX_BATCH_MAX): the
    hourly run settles them."""
    async with ctx.pool.acquire() as conn:
        found = await store.pending_older(conn, older_than_s=older_than_s, limit=limit)
    return await settle(ctx, found)


async def settle(ctx: Context, found: list[store.Break]) -> tuple[int, int]:
    """Fix or queue each break (each in its own transaction); returns (fixed, queued)."""
    fixed = queued = 0
    async with ctx.pool.acquire() as conn:
        for brk in found:
            if brk.kind in catalogue.AUTO:
                try:
                    async with conn.transaction():
                        done = await _fix(conn, ctx, brk)
                    fixed += done
                    continue
                except (NotFixable, PaycellError, asyncpg.CheckViolationError) as exc:
                    log.warning("reconcile.fix_refused", break_id=brk.break_id, kind=brk.kind, error=str(exc))
                    brk.evidence = {**brk.evidence, "fix_refused": str(exc)[:500]}
            async with conn.transaction():
                queued += await queue(conn, brk)
    return fixed, queued


async def queue(conn, brk: store.Break) -> int:
    """Open the break's review item (once per subject) and mark it queued."""
    locked = await store.lock_break(conn, brk.owner_id, brk.break_id)
    if locked is None or locked.disposition != "found":
        return 0
    kind = catalogue.kind_of(brk.kind)
    expires_at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=REVIEW_EXPIRY_DAYS)
    evidence = {**brk.evidence, "break_id": brk.break_id, "kind": kind.name, "meaning": kind.meaning,
                "payment_order_id": brk.payment_order_id, "run_id": brk.run_id}
    review_id = await store.open_review(conn, owner=brk.owner_id, subject_key=f"{brk.kind}:{brk.subject_key}",
                                        kind=brk.kind, evidence=evidence, expires_at=expires_at)
    await store.settle_break(conn, brk.owner_id, brk.break_id, disposition="queued", review_id=review_id)
    log.info("reconcile.queued", break_id=brk.break_id, kind=brk.kind, review_id=review_id)
    return 1


async def _fix(conn, ctx: Context, brk: store.Break) -> int:
    # A break names its order by id alone (a provider's line, an internal check): its owner is
    # looked up first (a multi-shard probe on Citus), then the order locked by its key.
    user_id = await payments.owner_of(conn, brk.payment_order_id) if brk.payment_order_id else None
    order = await payments.lock_order(conn, user_id, brk.payment_order_id) if user_id else None
    locked = await store.lock_break(conn, brk.owner_id, brk.break_id)
    if locked is None or locked.disposition != "found":
        return 0
    fix, transaction_id = await FIXES[brk.kind](conn, ctx, brk, order)
    await store.settle_break(conn, brk.owner_id, brk.break_id, disposition="fixed", fix=fix,
                             transaction_id=transaction_id)
    if order is not None:
        await events.append(conn, user_id=order.user_id, payment_id=order.payment_id,
                            payment_order_id=order.payment_order_id, type="order.reconciled",
                            data={"break_id": brk.break_id, "kind": brk.kind, "fix": fix,
                                  "transaction_id": transaction_id})
    log.info("reconcile.fixed", break_id=brk.break_id, kind=brk.kind, fix=fix, transaction_id=transaction_id)
    return 1


def _require(order: Order | None) -> Order:
    if order is None:
        raise NotFixable("the break names no payment order")
    return order


async def _reopen_for_outcome(conn, order: Order, brk: store.Break) -> bool:
    """An order that needs attention after an unknown outcome goes back to psp_pending so the PSP's
    word can be recorded by the charge step's own code; False when it is not such an order."""
    if order.payment_order_status in ACTIVE:
        return True
    if order.payment_order_status == "needs_attention" and _failure_code(brk) in UNKNOWN_OUTCOME:
        await payments.move(conn, order, "psp_pending", event="order.reopened",
                            data={"reason": "reconciliation", "break_id": brk.break_id})
        return True
    return False


def _failure_code(brk: store.Break) -> str | None:
    """The order's failure code when the break was found (its evidence keeps it)."""
    return brk.evidence.get("failure_code") or (brk.evidence.get("order") or {}).get("failure_code")


async def _complete(conn, ctx: Context, brk: store.Break, order: Order | None) -> tuple[str, int | None]:
    """The PSP moved the money: complete the order and post its settlement."""
    order = _require(order)
    if order.payment_order_status in ("completed", "returned"):
        return "already_consistent", None
    ref = brk.evidence.get("psp_reference") or order.psp_reference or ""
    if order.payment_order_status == "psp_succeeded":
        await settle.complete(conn, ctx, order)
    elif await _reopen_for_outcome(conn, order, brk):
        await outcome.record_outcome(conn, ctx, order, PspResult(status="succeeded", psp_reference=ref))
    else:
        raise NotFixable(f"the order is {order.payment_order_status}: completing it is not safe")
    return "completed_and_posted", await _transaction_of(conn, order, "settle")


async def _fail(conn, ctx: Context, brk: store.Break, order: Order | None) -> tuple[str, int | None]:
    """The PSP has no charge or declined it: fail the order, release a pay-out's reserve."""
    order = _require(order)
    if order.payment_order_status == "failed":
        return "already_consistent", None
    if not await _reopen_for_outcome(conn, order, brk):
        raise NotFixable(f"the order is {order.payment_order_status}: failing it is not safe")
    code = brk.evidence.get("decline_code") or "psp_has_no_charge"
    await outcome.fail(conn, ctx, order, code, brk.evidence.get("psp_reference") or order.psp_reference)
    return "failed_and_released" if order.kind == "payout" else "failed", (
        await _transaction_of(conn, order, "release") if order.kind == "payout" else None)


async def _mark(conn, ctx: Context, brk: store.Break, order: Order | None) -> tuple[str, int | None]:
    """The settlement is posted: the order says so too (an event; no money moves)."""
    order = _require(order)
    if await _transaction_of(conn, order, "settle") is None and await _transaction_of(conn, order, "transfer") is None:
        raise NotFixable("nothing is posted for the order")
    state = order.payment_order_status
    if state == "needs_attention":
        await payments.move(conn, order, "psp_succeeded", event="order.reconciled",
                            data={"break_id": brk.break_id, "reason": "posted"})
        state = "psp_succeeded"
    if state in ACTIVE or state == "psp_succeeded":
        await payments.move(conn, order, "completed", event="order.posted", data={"break_id": brk.break_id},
                            ledger_updated=True, wallet_updated=True)
    elif state == "completed":
        await store.mark_order_posted(conn, order.user_id, order.payment_order_id)
    else:
        raise NotFixable(f"a posted order in {state} cannot be marked")
    return "marked_posted", None


async def _release(conn, ctx: Context, brk: store.Break, order: Order | None) -> tuple[str, int | None]:
    order = _require(order)
    transaction_id = await store.post_release(conn, order.user_id, order.payment_order_id)
    await events.append(conn, user_id=order.user_id, payment_id=order.payment_id,
                        payment_order_id=order.payment_order_id, type="order.released",
                        data={"transaction_id": transaction_id, "break_id": brk.break_id})
    return "reserve_released", transaction_id


async def _return(conn, ctx: Context, brk: store.Break, order: Order | None) -> tuple[str, int | None]:
    """The provider took a completed payment back: post the return and move the order."""
    order = _require(order)
    if order.payment_order_status in ("returned", "needs_attention"):
        return "already_consistent", None
    if order.payment_order_status != "completed":
        raise NotFixable(f"a return of an order in {order.payment_order_status}")
    posting = await postings.return_payment(conn, order, system_slices=ctx.settings.system_account_slices)
    shortfall_minor = await postings.receivable_share(conn, posting)
    data = {"return_code": "settlement_report", "transaction_id": posting.transaction_id, "break_id": brk.break_id}
    if shortfall_minor:
        await payments.move(conn, order, "needs_attention", event="order.needs_attention",
                            data={"reason": "return_shortfall", "shortfall_minor": shortfall_minor, **data},
                            failure_code="return_shortfall")
    else:
        await payments.move(conn, order, "returned", event="order.returned", data=data,
                            failure_code="settlement_report")
    return "return_posted", posting.transaction_id


async def _redrive_event(conn, ctx: Context, brk: store.Break, order: Order | None) -> tuple[str, int | None]:
    send(ctx.broker, "apply_event", brk.evidence["connector"], brk.evidence["event_id"])
    return "event_redriven", None


async def _transaction_of(conn, order: Order, step: str) -> int | None:
    return await store.transaction_of(conn, order.user_id, f"{order.payment_order_id}:{step}")


FIXES = {
    "psp_succeeded_not_posted": _complete,
    "status_settled_order_live": _complete,
    "psp_failed_still_pending": _fail,
    "posted_not_marked": _mark,
    "reserve_without_live_payout": _release,
    "status_returned_order_completed": _return,
    "webhook_not_applied": _redrive_event,
}
assert set(FIXES) == catalogue.AUTO, "every automatic kind has exactly one fix"
