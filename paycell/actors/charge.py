"""Step `psp_submitting` / `psp_pending` / `requires_action`: ask the PSP to move the money,
outside any database transaction, then record what it said (paycell.actors.outcome, which the
webhook applier shares).

The order id is the PSP's idempotency key, at every connector the order is sent to. On the first
call of a connector (nothing sent to it yet) the charge is submitted directly; on any later one
(a retry after a timeout or a lost response, a re-drive, a pending charge) the connector is
first ASKED for the charge's status and only submitted to when it says it has none (a charge
waiting for its customer is asked too: `status` captures one the customer has approved, where
the provider needs that). A transient
failure bumps the attempt and the lease, then raises for Dramatiq's Retries; a decline is an
outcome, not an error, and is never retried nor sent elsewhere.

Every call goes through the connector's circuit breaker (paycell.psp.breakers). Failover
(the candidates `screen` fixed, in order) never double-charges:
- nothing was sent to this connector yet and its breaker is open: the order moves to the next
  candidate at once (`breaker_open`);
- after an unknown outcome the connector is asked first, and the order moves to the next
  candidate (`failover`) only once it has answered that it holds no such payment, and only when
  its breaker is open or PAYCELL_PSP_CONNECTOR_TRIES_MAX calls of it stayed unknown, and no
  sooner than PAYCELL_PSP_FAILOVER_QUIET_S after the last of those calls (a request the provider
  was still processing when paycell gave up on it must have finished); while its breaker is open
  and it cannot be asked, the order waits (retries with backoff);
- a pending charge stays where it is.
The order keeps its idempotency key (its id) everywhere, and each move is one psp_attempt row
written in the statement that moves the order.

Unknown is not declined: only the PSP's explicit decline fails an order. A request the PSP
refuses as invalid (PspRejected) fails the order only on the first call of a connector, and only
once the PSP has said it holds no charge under the order's key; after an ambiguous attempt, a
refusal (or any 4xx of a status call) is retried like any unknown outcome and, when retries run
out, the order goes to needs_attention with a pay-out's reserve kept. Failing it instead would
release money the PSP may already have paid out.

A pending charge is asked again after PAYCELL_PSP_POLL_INTERVAL_MS, doubling per ask up to
PAYCELL_PSP_POLL_INTERVAL_MAX_MS; entering `psp_pending` sets the order's deadline to
PAYCELL_PSP_PENDING_DEADLINE_S from then, and an ask past it that still finds the charge pending
sends the order to needs_attention (a pay-out keeps its reserve). The sweeper applies the same
deadline (the same column) to an order nobody asks about.
"""
from __future__ import annotations

import datetime

import dramatiq
import structlog
from yarl import URL

from paycell.actors import context, outcome
from paycell.actors.broker import PAYMENTS_QUEUE, Transient, send
from paycell.errors import PaycellError
from paycell.psp.base import Charge, PspRejected, PspResult, PspTransientError
from paycell.psp.breakers import BreakerOpen
from paycell.store import payments
from paycell.workflow import Order

log = structlog.get_logger("paycell.step.charge")
PSP_STATES = outcome.ACTIVE


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def charge_for(order: Order, return_url: str | None = None) -> Charge:
    """The charge to ask of the PSP; a customer sent to act at the provider comes back to
    `return_url` (PAYCELL_PSP_RETURN_URL) with the order's user and id (paycell.http.returns)."""
    instrument = order.from_acct if order.kind == "payin" else order.to_acct
    back = str(URL(return_url).update_query(user_id=order.user_id, order_id=order.payment_order_id)) \
        if return_url else None
    return Charge(idempotency_key=order.payment_order_id, direction=order.kind, amount_minor=order.amount_minor,
                  currency=order.currency, instrument=instrument, payment_option=order.payment_option,
                  psp_reference=order.psp_reference, customer_ref=order.user_id, return_url=back)


def nothing_sent(order: Order) -> bool:
    """True when the order's current connector has never been called for it: its first try
    (`attempt` is where that connector's tries began), not pending, no re-drive bumped it."""
    return order.payment_order_status == "psp_submitting" and order.attempt == order.psp_attempt_from


def later_candidates(order: Order) -> list[str]:
    """The connectors after the current one in the order's candidates."""
    candidates = order.psp_candidates or []
    return candidates[candidates.index(order.psp) + 1:] if order.psp in candidates else []


def next_candidate(order: Order) -> str | None:
    """The connector after the current one in the order's candidates, if any."""
    later = later_candidates(order)
    return later[0] if later else None


async def _next_not_open(ctx: context.Context, order: Order) -> str | None:
    """The first later candidate whose breaker is not open (one Redis read each, on this path
    only); None when every one is: the order then waits for its current connector."""
    for name in later_candidates(order):
        if not await ctx.breakers.is_open(name):
            return name
    return None


@dramatiq.actor(actor_name="charge", queue_name=PAYMENTS_QUEUE, on_retry_exhausted="record_dead_letter")
async def charge(*ids: str) -> None:
    """`ids`: (user_id, order_id); for one release also (order_id,) (context.order_key)."""
    ctx = context.current()
    key = await context.order_key(ctx, "charge", ids)
    if key is None:
        return
    user_id, order_id = key
    with context.bound(step="charge", user_id=user_id, order_id=order_id):
        async with ctx.pool.acquire() as conn:
            order = await payments.read_order(conn, user_id, order_id)
        if order is None or order.payment_order_status not in PSP_STATES:
            log.info("step.skipped", state=order and order.payment_order_status)
            return
        structlog.contextvars.bind_contextvars(payment_id=order.payment_id, attempt=order.attempt, psp=order.psp)
        psp, breakers, name = ctx.psp(order.psp), ctx.breakers, order.psp
        the_charge = charge_for(order, ctx.settings.psp_return_url)
        fresh = nothing_sent(order)
        try:
            result = None if fresh else await breakers.call(name, lambda: psp.status(the_charge))
            if result is None:
                leave = "stay" if fresh else await _leave(ctx, order)
                if leave == "leave":
                    await _move_on(ctx, order, "failover")
                    return
                if leave == "wait":
                    await _note_transient(ctx, user_id, order_id, f"{name} holds no such payment; leaving it "
                                          f"{ctx.settings.psp_failover_quiet_s} s after the last unknown call",
                                          sent=False)
                    raise Transient(f"PSP {name}: waiting before failing over")
                result = await _submit(breakers, psp, order, the_charge, not fresh)
        except BreakerOpen as exc:
            to = await _next_not_open(ctx, order) if fresh else None
            if to is not None:
                await _move_on(ctx, order, "breaker_open", to=to)
                return
            await _note_transient(ctx, user_id, order_id, str(exc), sent=False)
            raise Transient(str(exc)) from exc
        except (PspTransientError, PspRejected) as exc:
            await _note_transient(ctx, user_id, order_id, str(exc) or type(exc).__name__, sent=True)
            raise Transient(f"PSP {order.psp}: {exc}") from exc
        await _record(ctx, user_id, order_id, result)


async def _leave(ctx: context.Context, order: Order) -> str:
    """The connector has just said it holds no charge under the order's key, after a call whose
    outcome stayed unknown. "leave" for the next candidate when there is one and the connector's
    breaker is open or its tries are used up, once PAYCELL_PSP_FAILOVER_QUIET_S have passed since
    that call ("wait" before: neither submitted here again nor sent elsewhere); else "stay"
    (submit here again, under the same key). One Redis read, on this failure path only."""
    if order.payment_order_status != "psp_submitting" or next_candidate(order) is None:
        return "stay"
    unknown_calls = order.attempt - order.psp_attempt_from
    if unknown_calls < ctx.settings.psp_connector_tries_max and not await ctx.breakers.is_open(order.psp):
        return "stay"
    if order.psp_unknown_at is not None:
        quiet_s = (_now() - order.psp_unknown_at).total_seconds()
        if quiet_s < ctx.settings.psp_failover_quiet_s:
            return "wait"
    return "leave"


async def _move_on(ctx: context.Context, seen: Order, reason: str, *, to: str | None = None) -> None:
    """Send the order to candidate `to` (default: the next one), with a new psp_attempt row in
    the statement that moves it, under the row lock and only if nobody moved it meanwhile; then
    enqueue `charge`."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        order = await context.lock_order_in(conn, seen.user_id, seen.payment_order_id, ("psp_submitting",))
        if order is None or (order.psp, order.psp_attempt_no, order.attempt) != (seen.psp, seen.psp_attempt_no,
                                                                                 seen.attempt):
            log.info("psp.move_on_skipped", reason="order moved meanwhile")
            return
        to = to or next_candidate(order)
        if to not in later_candidates(order):
            raise ValueError(f"{to!r} is not a later candidate of the order's {order.psp_candidates}")
        number, attempt = order.psp_attempt_no + 1, order.attempt + 1
        await payments.move(conn, order, "psp_submitting", event="order.psp_failover",
                            data={"from_psp": order.psp, "psp": to, "reason": reason, "attempt": attempt},
                            psp=to, psp_reference=None, attempt=attempt, psp_attempt_no=number,
                            psp_attempt_from=attempt, lease_until=payments.lease(ctx.settings.psp_lease_s),
                            psp_attempt=(number, to, reason))
    log.warning("psp.failover", from_psp=seen.psp, to_psp=to, reason=reason)
    send(ctx.broker, "charge", seen.user_id, seen.payment_order_id)


async def _submit(breakers, psp, order: Order, the_charge: Charge, outcome_unknown: bool) -> PspResult:
    """Submit the charge. A refusal on a connector's clean first call fails the order only once
    the PSP confirms it holds no charge under the key; otherwise PspRejected propagates (unknown)."""
    try:
        return await breakers.call(order.psp, lambda: psp.submit(the_charge))
    except PspRejected as exc:
        log.warning("psp.rejected", error=str(exc), outcome_unknown=outcome_unknown)
        if outcome_unknown:
            raise
        found = await breakers.call(order.psp, lambda: psp.status(the_charge))
        if found is not None:
            return found
        return PspResult(status="declined", psp_reference="", decline_code="psp_rejected")


async def _note_transient(ctx: context.Context, user_id: str, order_id: str, error: str, *, sent: bool) -> None:
    """The outcome is unknown (`sent`): the next attempt must ask before it submits again. A call
    the breaker refused sent nothing: the attempt stays, only the lease moves on."""
    lease_s = ctx.settings.psp_lease_s + ctx.settings.retry_backoff_max_ms / 1000
    async with ctx.pool.acquire() as conn, conn.transaction():
        order = await payments.lock_order(conn, user_id, order_id)
        if order is None or order.payment_order_status not in PSP_STATES:
            return
        await payments.move(conn, order, order.payment_order_status, event="order.psp_attempt_failed",
                            data={"attempt": order.attempt, "error": error[:500]},
                            lease_until=payments.lease(lease_s), last_error=error[:500],
                            **({"attempt": order.attempt + 1, "psp_unknown_at": _now()} if sent else {}))
    log.warning("psp.transient_failure", error=error)


async def _record(ctx: context.Context, user_id: str, order_id: str, result: PspResult) -> str | int | None:
    """Record the PSP's answer through the shared outcome code (paycell.actors.outcome), which the
    webhook applier uses too; returns the follow-up it called for."""
    follow_up = order = None
    async with ctx.pool.acquire() as conn:
        try:
            async with conn.transaction():
                order = await context.lock_order_in(conn, user_id, order_id, PSP_STATES)
                if order is not None:
                    follow_up = await outcome.record_outcome(conn, ctx, order, result)
        except PaycellError as exc:
            log.error("posting.failed", error=str(exc))
            async with conn.transaction():
                order = await context.lock_order_in(conn, user_id, order_id, PSP_STATES)
                if order is None:
                    return None
                follow_up = await outcome.record_posting_failed(conn, ctx, order, result, str(exc))
    log.info("psp.outcome", status=result.status, psp_reference=result.psp_reference)
    if order is not None:
        await outcome.after_commit(ctx, order, follow_up, charge_for(order).instrument)
    return follow_up
