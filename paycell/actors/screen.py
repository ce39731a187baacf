"""Step 1, `requested`: the risk check (the per-payment and daily limits, before anything is
reserved or posted, then the risk engine's rules and model), the choice of connector
(paycell.psp.routing); then the decision's tail (paycell/actors/dispatch.py).

- block: the order fails `risk_blocked`.
- review: the order is parked in `in_review` with one review item (paycell/reviews.py); a pay-out
  reserves its funds first and keeps them while parked. A payment no connector can carry fails
  `psp_no_connector` instead of waiting for a reviewer.
- allow: pay-in and pay-out leave in `psp_submitting` with attempt 1, a lease, their connector and
  the candidates after it, ready for `charge`; a transfer needs no PSP and ends here, in the same
  transaction.
An overdraft aborts that transaction (the ledger refuses it in Postgres); the order is then failed
in a second one, so the common path pays for no savepoint.
"""
from __future__ import annotations

import dramatiq
import structlog

from paycell import reviews
from paycell.actors import context
from paycell.actors.broker import PAYMENTS_QUEUE, send
from paycell.actors.dispatch import candidates_for, dispatch, fail_insufficient
from paycell.errors import InsufficientFunds
from paycell.psp import routing
from paycell.rules import guardrail
from paycell.store import payments, risk_totals

log = structlog.get_logger("paycell.step.screen")
ALLOWED = ("order.risk_checked", {"verdict": "allow"})
RISK_BLOCKED = "risk_blocked"  # the failure code of an order a rule (or the model, through a rule) blocked


@dramatiq.actor(actor_name="screen", queue_name=PAYMENTS_QUEUE, on_retry_exhausted="record_dead_letter")
async def screen(*ids: str) -> None:
    """`ids`: (user_id, order_id); for one release also (order_id,) (context.order_key)."""
    ctx = context.current()
    key = await context.order_key(ctx, "screen", ids)
    if key is None:
        return
    user_id, order_id = key
    with context.bound(step="screen", user_id=user_id, order_id=order_id):
        async with ctx.pool.acquire() as conn:
            seen: dict = {}
            try:
                async with conn.transaction():
                    next_step = await _screen(conn, ctx, user_id, order_id, seen)
            except InsufficientFunds:
                # The decision stands in the log as it was made (allow, or review for a pay-out
                # reserved before it would have been parked).
                await fail_insufficient(conn, ctx.settings, user_id, order_id, ("requested",),
                                        milestones=(seen.get("checked", ALLOWED),))
                return
        if next_step:
            send(ctx.broker, next_step, user_id, order_id)


async def _screen(conn, ctx: context.Context, user_id: str, order_id: str, seen: dict | None = None) -> str | None:
    """Screen the order in the caller's transaction; returns the step to enqueue after commit.
    `seen["checked"]` is the risk decision's milestone once made."""
    seen = {} if seen is None else seen
    plan = await ctx.risk.plan(conn)
    order, accepted_minor, attached, risk_values = await risk_totals.lock_order_for_screen(
        conn, user_id, order_id, window_s=guardrail.DAY_S, connectors=routing.names_to_check(ctx.settings),
        extra=plan.expressions, extra_args=plan.args)
    order = context.in_states(order, ("requested",))
    if order is None:
        return None
    blocked = guardrail.screen(order, ctx.settings) or guardrail.screen_daily(order, accepted_minor, ctx.settings)
    if blocked:
        await payments.move(conn, order, "failed", event="order.blocked", data={"reason": blocked},
                            failure_code=blocked)
        log.info("order.blocked", reason=blocked)
        return None
    candidates = candidates_for(ctx, order, attached) if order.kind != "transfer" else []
    assessment = ctx.risk.assess(plan, order, risk_values, connector=candidates[0] if candidates else None)
    checked = seen["checked"] = ("order.risk_checked", assessment.event_data())
    if assessment.action == "block":
        await payments.move(conn, order, "failed", event="order.blocked", milestones=(checked,),
                            data={"reason": RISK_BLOCKED}, failure_code=RISK_BLOCKED)
        log.info("order.blocked", reason=RISK_BLOCKED, rules=list(assessment.decision.reasons))
        return None
    if assessment.action == "review" and (order.kind == "transfer" or candidates):
        await reviews.park(conn, ctx.settings, order, evidence=checked[1],
                           reasons=list(assessment.decision.reasons), milestones=(checked,))
        return None
    return await dispatch(conn, ctx, order, candidates, milestones=(checked,))
