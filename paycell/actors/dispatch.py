"""After the risk decision: the tail every allowed payment goes through, whether the screen step
allowed it inline (no extra message on the common path) or a reviewer approved it later (the
`proceed` step, paycell/actors/proceed.py).

A transfer posts and completes. A pay-in or pay-out with no connector able to carry it fails
(`psp_no_connector`); otherwise the first candidate whose breaker is not open gets it, a pay-out
not reserved yet reserves its funds, and the order leaves in `psp_submitting` with attempt 1, a
lease, its connector and the candidates after it, ready for `charge`. A pay-out that was parked
in review was reserved before it was parked: it keeps that reserve, and a failure here releases it.

Everything runs in the caller's transaction, under the order's row lock. An overdraft (a transfer
without the funds) raises InsufficientFunds and aborts that transaction; the caller fails the
order in a second one (`fail_insufficient`).
"""
from __future__ import annotations

import structlog

from paycell import postings
from paycell.actors import context
from paycell.config import Settings
from paycell.psp import registry, routing
from paycell.store import payments
from paycell.workflow import Order

log = structlog.get_logger("paycell.step.dispatch")
NO_CONNECTOR = "psp_no_connector"  # the failure code when no connector of the route can carry the order
INSUFFICIENT = "insufficient_funds"
Milestones = tuple[tuple[str, dict], ...]


async def dispatch(conn, ctx: context.Context, order: Order, candidates: list[str], *,
                   milestones: Milestones = (), data: dict | None = None) -> str | None:
    """Continue the locked `order` (in `requested` after an allow, `in_review` after an approval)
    in the caller's transaction; returns the step to enqueue after commit ("charge" or None).
    `milestones` are logged before the move's event, `data` is added to it."""
    extra = data or {}
    if order.kind == "transfer":
        posting = await postings.transfer(conn, order, system_slices=ctx.settings.system_account_slices)
        await payments.move(conn, order, "completed", event="order.posted", milestones=milestones,
                            data={"transaction_id": posting.transaction_id, **extra},
                            ledger_updated=True, wallet_updated=True)
        log.info("order.completed")
        return None
    if not candidates:
        await fail(conn, ctx.settings, order, NO_CONNECTOR, milestones=milestones, data=extra)
        log.warning("order.no_connector", route=routing.route(ctx.settings, order.payment_option, order.currency))
        return None
    chosen, skipped = await first_not_open(ctx, candidates)
    steps = list(milestones)
    if order.kind == "payout" and order.payment_order_status == "requested":
        posting = await postings.reserve(conn, order, system_slices=ctx.settings.system_account_slices)
        steps.append(("order.reserved", {"transaction_id": posting.transaction_id}))
    move_data = {"psp": chosen, "attempt": 1, **extra}
    if skipped:
        move_data["breaker_open"] = ",".join(skipped)
    await payments.move(conn, order, "psp_submitting", event="order.psp_submitting", milestones=tuple(steps),
                        data=move_data, psp=chosen, attempt=1, psp_candidates=candidates, psp_attempt_no=1,
                        psp_attempt_from=1, lease_until=payments.lease(ctx.settings.psp_lease_s),
                        psp_attempt=(1, chosen, "routed"))
    return "charge"


def reserved(order: Order) -> bool:
    """A pay-out holds a reserve that nothing settled or released yet: one parked in review
    (reserved before it was parked). In `requested` nothing is reserved yet."""
    return order.kind == "payout" and order.payment_order_status == "in_review"


async def fail(conn, settings: Settings, order: Order, code: str, *, milestones: Milestones = (),
               data: dict | None = None) -> None:
    """Fail the locked order (`requested` or `in_review`) with `code`; a parked pay-out's reserve is
    released in the same transaction (milestone order.released)."""
    steps = list(milestones)
    if reserved(order):
        posting = await postings.release(conn, order, system_slices=settings.system_account_slices)
        steps.append(("order.released", {"transaction_id": posting.transaction_id}))
    await payments.move(conn, order, "failed", event="order.failed", milestones=tuple(steps),
                        data={"reason": code, **(data or {})}, failure_code=code)


async def fail_insufficient(conn, settings: Settings, user_id: str, order_id: str, states: tuple[str, ...],
                            milestones: Milestones = ()) -> bool:
    """The second transaction after an overdraft aborted the first: fail the order
    `insufficient_funds` when it is still in one of `states`. True when it did."""
    async with conn.transaction():
        order = await context.lock_order_in(conn, user_id, order_id, states)
        if order is None:
            return False
        await fail(conn, settings, order, INSUFFICIENT, milestones=milestones)
    log.info("order.failed", reason=INSUFFICIENT)
    return True


def candidates_for(ctx: context.Context, order: Order, attached: list[str] | None) -> list[str]:
    """The route's connectors that can carry this order, in the route's order: the user's
    instrument is attached on it (checked here only for routes of several connectors: the gate
    checked a single one), it supports the payment, and it is configured."""
    route = routing.route(ctx.settings, order.payment_option, order.currency)
    held = None if len(route) == 1 or attached is None else {registry.canonical(n) for n in attached}
    return [name for name in route
            if (held is None or name in held) and registry.missing(name, ctx.settings) is None
            and ctx.psp(name).supports(order.kind, order.payment_option, order.currency)]


async def first_not_open(ctx: context.Context, candidates: list[str]) -> tuple[str, list[str]]:
    """The first candidate whose breaker is not open, and those skipped before it. One Redis
    round trip per breaker read, and none for a single candidate: it gets the order whatever its
    breaker says (`charge` waits for it). When every breaker is open, the first gets the order."""
    if len(candidates) == 1:
        return candidates[0], []
    for i, name in enumerate(candidates):
        if not await ctx.breakers.is_open(name):
            return name, candidates[:i]
    return candidates[0], []
