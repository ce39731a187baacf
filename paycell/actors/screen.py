"""Step 1, `requested`: the risk check (the per-payment and daily limits, before anything is
reserved or posted), the choice of connector (paycell.psp.routing); then a pay-out reserves its
funds and a transfer posts.

Pay-in and pay-out leave in `psp_submitting` with attempt 1, a lease, their connector and the
candidates after it (for `charge` to fail over to), ready for `charge`; a transfer needs no PSP
and ends here, in the same transaction. An overdraft aborts that transaction (the ledger refuses
it in Postgres); the order is then failed in a second one, so the common path pays for no savepoint.
"""
from __future__ import annotations

import dramatiq
import structlog

from paycell import postings
from paycell.actors import context
from paycell.actors.broker import PAYMENTS_QUEUE, send
from paycell.errors import InsufficientFunds
from paycell.psp import registry, routing
from paycell.rules import guardrail
from paycell.store import payments, risk_totals
from paycell.workflow import Order

log = structlog.get_logger("paycell.step.screen")
ALLOWED = ("order.risk_checked", {"verdict": "allow"})
RISK_BLOCKED = "risk_blocked"  # the failure code of an order a rule (or the model, through a rule) blocked
NO_CONNECTOR = "psp_no_connector"  # the failure code when no connector of the route can carry the order


@dramatiq.actor(actor_name="screen", queue_name=PAYMENTS_QUEUE, on_retry_exhausted="record_dead_letter")
async def screen(order_id: str) -> None:
    ctx = context.current()
    with context.bound(step="screen", order_id=order_id):
        async with ctx.pool.acquire() as conn:
            try:
                async with conn.transaction():
                    next_step = await _screen(conn, ctx, order_id)
            except InsufficientFunds:
                async with conn.transaction():
                    order = await context.lock_order_in(conn, order_id, ("requested",))
                    if order is None:
                        return
                    await payments.move(conn, order, "failed", event="order.failed", milestones=(ALLOWED,),
                                        data={"reason": "insufficient_funds"}, failure_code="insufficient_funds")
                log.info("order.failed", reason="insufficient_funds")
                return
        if next_step:
            send(ctx.broker, next_step, order_id)


async def _screen(conn, ctx: context.Context, order_id: str) -> str | None:
    """Screen the order in the caller's transaction; returns the step to enqueue after commit."""
    plan = await ctx.risk.plan(conn)
    order, accepted_minor, attached, risk_values = await risk_totals.lock_order_for_screen(
        conn, order_id, window_s=guardrail.DAY_S, connectors=routing.names_to_check(ctx.settings),
        extra=plan.expressions, extra_args=plan.prefetch.args)
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
    assessment = await ctx.risk.assess(conn, plan, order, risk_values, connector=candidates[0] if candidates else None)
    checked = ("order.risk_checked", assessment.event_data())
    if assessment.action == "block":
        await payments.move(conn, order, "failed", event="order.blocked", milestones=(checked,),
                            data={"reason": RISK_BLOCKED}, failure_code=RISK_BLOCKED)
        log.info("order.blocked", reason=RISK_BLOCKED, rules=list(assessment.decision.reasons))
        return None
    if order.kind == "transfer":
        posting = await postings.transfer(conn, order, system_slices=ctx.settings.system_account_slices)
        await payments.move(conn, order, "completed", event="order.posted", milestones=(checked,),
                            data={"transaction_id": posting.transaction_id}, ledger_updated=True, wallet_updated=True)
        log.info("order.completed")
        return None
    if not candidates:
        await payments.move(conn, order, "failed", event="order.failed", milestones=(checked,),
                            data={"reason": NO_CONNECTOR}, failure_code=NO_CONNECTOR)
        log.warning("order.no_connector", route=routing.route(ctx.settings, order.payment_option, order.currency))
        return None
    chosen, skipped = await _first_not_open(ctx, candidates)
    milestones = [checked]
    if order.kind == "payout":
        posting = await postings.reserve(conn, order, system_slices=ctx.settings.system_account_slices)
        milestones.append(("order.reserved", {"transaction_id": posting.transaction_id}))
    data = {"psp": chosen, "attempt": 1}
    if skipped:
        data["breaker_open"] = ",".join(skipped)
    await payments.move(conn, order, "psp_submitting", event="order.psp_submitting", milestones=tuple(milestones),
                        data=data, psp=chosen, attempt=1, psp_candidates=candidates, psp_attempt_no=1,
                        psp_attempt_from=1, lease_until=payments.lease(ctx.settings.psp_lease_s),
                        psp_attempt=(1, chosen, "routed"))
    return "charge"


def candidates_for(ctx: context.Context, order: Order, attached: list[str] | None) -> list[str]:
    """The route's connectors that can carry this order, in the route's order: the user's
    instrument is attached on it (checked here only for routes of several connectors: the gate
    checked a single one), it supports the payment, and it is configured."""
    route = routing.route(ctx.settings, order.payment_option, order.currency)
    held = None if len(route) == 1 or attached is None else {registry.canonical(n) for n in attached}
    return [name for name in route
            if (held is None or name in held) and registry.missing(name, ctx.settings) is None
            and ctx.psp(name).supports(order.kind, order.payment_option, order.currency)]


async def _first_not_open(ctx: context.Context, candidates: list[str]) -> tuple[str, list[str]]:
    """The first candidate whose breaker is not open, and those skipped before it. One Redis
    round trip per breaker read, and none for a single candidate: it gets the order whatever its
    breaker says (`charge` waits for it). When every breaker is open, the first gets the order."""
    if len(candidates) == 1:
        return candidates[0], []
    for i, name in enumerate(candidates):
        if not await ctx.breakers.is_open(name):
            return name, candidates[:i]
    return candidates[0], []
