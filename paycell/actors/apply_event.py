"""Step `apply_event`: apply one stored provider event (the webhook inbox, paycell.store.inbox) to
its payment order, through the same state table and the same outcome code as `charge`.

It locks the event, then the order (by the order id the provider echoes, else by the connector's
charge reference: payment_order (psp, psp_reference)) by its full key (user_id, order_id). A
provider's event never names paycell's user: the inbox found the owner of the order an event
names by its id when it stored the event (psp_event.owner_id, in the statement that stored it);
otherwise (a reference alone, or an event stored before the column) it is looked up here
(payments.key_by_reference / owner_of: one multi-shard probe on Citus). It decides, and marks the event applied in the
same transaction, so a duplicate delivery, a second message or a race with `charge` finds it done
or finds the order moved on. What an event does, by the order's state:

    outcome   live (psp_submitting, psp_pending, requires_action): recorded as `charge` records
              the PSP's answer (complete and post, fail and release, pending, requires_action).
              An older word than the order's (pending after success) is `stale`; the same word is
              `agrees`; a word against a terminal state (success after the order failed and
              released its reserve, a decline after completion) is a `contradiction`: the order
              goes to needs_attention with the evidence, never silently to another outcome.
    approved  the customer acted: `charge` is sent, whose `status` call captures at the provider.
    reversal  a reversal paycell asked for ended at the provider (Adyen's REFUND): recorded as the
              `reverse` step records the provider's answer (paycell/reversals/outcome.py), when the
              reversal still waits for it; the same word again `agrees`; another word on a
              reversal that ended is `held` beside the payment for a human.
    returned  completed: the compensating posting (post_order step `return`), then `returned`, or
              needs_attention when the wallet could not cover it all (the receivable holds the
              rest); a payment paycell has reversed (part of) goes to needs_attention instead, a
              `contradiction`: the provider's return and the refund must not both be booked. Before any success was recorded a return is the PSP's decline.
    ignored   stored, marked applied.

An event no order carries yet (its reference is recorded a moment later by `charge`) stays
unapplied, `unmatched`, and the sweeper sends it again; one naming an order another connector
carries stays unapplied as `mismatch`. Both are listed by `paycell webhooks unapplied`.
"""
from __future__ import annotations

import dramatiq
import structlog

from paycell import postings, workflow
from paycell.actors import context, outcome
from paycell.actors.broker import PAYMENTS_QUEUE, Transient, send
from paycell.actors.charge import charge_for
from paycell.errors import PaycellError
from paycell.psp.base import PspResult, WebhookEvent
from paycell.reversals import outcome as reversal_outcome
from paycell.store import events, inbox, payments
from paycell.store import reversals as reversal_store
from paycell.workflow import Order

log = structlog.get_logger("paycell.step.apply_event")

# (the order's state, what the event says) -> what that is, for a state that no longer moves on
# a PSP's answer. Anything else there is a contradiction.
_SETTLED_WORDS = {
    ("psp_succeeded", "succeeded"): "agrees", ("completed", "succeeded"): "agrees",
    ("failed", "declined"): "agrees",
    ("returned", "succeeded"): "stale", ("returned", "declined"): "stale",
}
_OLDER_WORDS = frozenset({"pending", "requires_action"})  # never news once an outcome is recorded


@dramatiq.actor(actor_name="apply_event", queue_name=PAYMENTS_QUEUE, on_retry_exhausted="record_dead_letter")
async def apply_event(connector: str, event_id: str) -> None:
    await apply(context.current(), connector, event_id)


async def apply(ctx: context.Context, connector: str, event_id: str) -> None:
    """Apply one stored event (the actor's body, callable with any context)."""
    with context.bound(step="apply_event", connector=connector, event_id=event_id):
        async with ctx.pool.acquire() as conn:
            try:
                async with conn.transaction():
                    order, follow_up = await _apply(conn, ctx, connector, event_id)
            except PaycellError as exc:
                log.error("posting.failed", error=str(exc))
                async with conn.transaction():
                    order, follow_up = await _keep_success(conn, ctx, connector, event_id, exc)
        if order is None or follow_up is None:
            return
        if follow_up == "charge":
            send(ctx.broker, "charge", order.user_id, order.payment_order_id)
        else:
            await outcome.after_commit(ctx, order, follow_up, charge_for(order).instrument)


async def _apply(conn, ctx: context.Context, connector: str, event_id: str) -> tuple[Order | None, str | None]:
    stored = await inbox.lock(conn, connector, event_id)
    if stored is None or stored.applied_at is not None:
        log.info("event.already_applied" if stored else "event.missing")
        return None, None
    event = stored.event
    structlog.contextvars.bind_contextvars(event_kind=event.kind, event_type=event.type)
    if event.kind == "ignored" or (event.kind == "outcome" and event.result is None):
        await inbox.mark_applied(conn, stored, result="ignored", order_id=None)
        log.info("event.ignored")
        return None, None
    if event.kind == "reversal":
        await _reversal(conn, ctx, connector, stored, event)
        return None, None
    order = await _lock_order(conn, connector, stored)
    if order is None or order.payment_order_status in ("requested", "in_review"):  # not sent to any PSP yet
        await inbox.mark_waiting(conn, stored, result="unmatched", retry_s=ctx.settings.psp_event_retry_s,
                                 note=f"no order at the PSP carries order id {event.order_id!r} "
                                      f"or reference {event.psp_reference!r} yet")
        log.warning("event.unmatched", order_id=event.order_id, psp_reference=event.psp_reference,
                    attempts=stored.apply_attempts + 1)
        return None, None
    if order.psp != connector:
        await inbox.mark_waiting(conn, stored, result="mismatch", retry_s=ctx.settings.psp_event_retry_s,
                                 note=f"order {order.payment_order_id} is carried by {order.psp!r}")
        log.warning("event.mismatch", order_id=order.payment_order_id, order_psp=order.psp)
        return None, None
    structlog.contextvars.bind_contextvars(user_id=order.user_id, order_id=order.payment_order_id,
                                           payment_id=order.payment_id)
    result, follow_up = await _decide(conn, ctx, order, event)
    await inbox.mark_applied(conn, stored, result=result, order_id=order.payment_order_id)
    log.info("event.applied", result=result, state=order.payment_order_status)
    return order, follow_up


async def _reversal(conn, ctx: context.Context, connector: str, stored, event: WebhookEvent) -> None:
    """A provider's word on a reversal paycell asked for, found through its payment's order."""
    order = await _lock_order(conn, connector, stored)
    reversal = order and event.reversal_id and await reversal_store.lock(conn, order.user_id, event.reversal_id)
    if not reversal or reversal.psp != connector or reversal.payment_order_id != order.payment_order_id \
            or reversal.state == "requested" or event.reversal is None:
        await inbox.mark_waiting(conn, stored, result="unmatched", retry_s=ctx.settings.psp_event_retry_s,
                                 note=f"no reversal {event.reversal_id!r} of a {connector} payment "
                                      f"{event.psp_reference!r} waits for the provider")
        log.warning("event.reversal_unmatched", reversal_id=event.reversal_id, psp_reference=event.psp_reference)
        return
    structlog.contextvars.bind_contextvars(user_id=order.user_id, order_id=order.payment_order_id,
                                           payment_id=order.payment_id, reversal_id=reversal.reversal_id)
    word = event.reversal.status
    if reversal.state == "psp_submitting":
        await reversal_outcome.record(conn, ctx.settings, order, reversal, event.reversal)
        result = "applied"
    elif (reversal.state, word) in (("succeeded", "succeeded"), ("failed", "failed")):
        result = "agrees"
    elif word == "pending":
        result = "stale"
    else:  # the provider contradicts how the reversal ended: a human decides, with the evidence
        await events.append(conn, user_id=order.user_id, payment_id=order.payment_id,
                            payment_order_id=order.payment_order_id, type="reversal.psp_event_held",
                            data={"reversal_id": reversal.reversal_id, "state": reversal.state, **_evidence(event),
                                  "psp_status": word})
        log.error("event.contradicts_reversal", state=reversal.state, word=word)
        result = "held"
    await inbox.mark_applied(conn, stored, result=result, order_id=order.payment_order_id)
    log.info("event.applied", result=result, reversal_state=reversal.state)


async def _lock_order(conn, connector: str, stored: inbox.StoredEvent) -> Order | None:
    """The event's order, locked by its full key: by the order id the provider echoes, its owner
    as the inbox found it (else looked up), or else by the connector's charge reference."""
    event = stored.event
    order_id = inbox.order_uuid(event.order_id)
    user_id = (stored.owner_id or await payments.owner_of(conn, str(order_id))) if order_id else None
    order = await payments.lock_order(conn, user_id, str(order_id)) if user_id else None
    if order is None and event.psp_reference:
        found = await payments.key_by_reference(conn, connector, event.psp_reference)
        order = await payments.lock_order(conn, *found) if found else None
    return order


async def _decide(conn, ctx: context.Context, order: Order, event: WebhookEvent) -> tuple[str, str | None]:
    """What the event does to the locked order: (the inbox's result, the follow-up after commit)."""
    state = order.payment_order_status
    if state == "needs_attention":
        return await _hold(conn, order, event), None
    if event.amount_minor is not None and (event.amount_minor, event.currency) != (order.amount_minor, order.currency):
        return await _contradiction(conn, order, event, f"the event is for {event.amount_minor} {event.currency}"), None
    if event.kind == "outcome":
        return await _outcome(conn, ctx, order, event, event.result)
    if event.kind == "approved":
        if state not in outcome.ACTIVE:
            return "stale", None
        await events.append(conn, user_id=order.user_id, payment_id=order.payment_id,
                            payment_order_id=order.payment_order_id, type="order.customer_acted",
                            data={"psp_reference": event.psp_reference, "event_type": event.type})
        return "applied", "charge"
    return await _returned(conn, ctx, order, event)


async def _outcome(conn, ctx, order: Order, event: WebhookEvent, result: PspResult) -> tuple[str, str | None]:
    state, word = order.payment_order_status, result.status
    if state in outcome.ACTIVE:
        if (state, word) in (("psp_pending", "pending"), ("requires_action", "requires_action")):
            return "agrees", None
        if (state, word) == ("psp_pending", "requires_action"):
            return "stale", None
        return "applied", await outcome.record_outcome(conn, ctx, order, result)
    if word in _OLDER_WORDS:
        return "stale", None
    verdict = _SETTLED_WORDS.get((state, word))
    if verdict is not None:
        return verdict, None
    return await _contradiction(conn, order, event, f"the PSP says {word} of an order that is {state}"), None


async def _returned(conn, ctx, order: Order, event: WebhookEvent) -> tuple[str, str | None]:
    state, code = order.payment_order_status, event.return_code or "returned"
    if state in ("returned", "failed"):
        return "agrees", None
    if state == "psp_succeeded":
        raise Transient("the order's settlement is still to be posted; its return comes after")
    if state in outcome.ACTIVE:  # no success was recorded: the PSP's return is its decline
        declined = PspResult(status="declined", psp_reference=event.psp_reference or order.psp_reference or "",
                             decline_code=code)
        return "applied", await outcome.record_outcome(conn, ctx, order, declined)
    reversed_minor, held_minor = await reversal_store.taken_minor(conn, order.user_id, order.payment_order_id)
    if reversed_minor or held_minor:
        # Taking the whole amount back again would compensate twice what paycell already refunded
        # (or is refunding): a human settles what the provider's return and paycell's reversal share.
        return await _contradiction(conn, order, event, f"a return of a payment of which paycell reversed "
                                                        f"{reversed_minor} (and is reversing {held_minor})"), None
    posting = await postings.return_payment(conn, order, system_slices=ctx.settings.system_account_slices)
    shortfall_minor = await postings.receivable_share(conn, posting)
    data = {"return_code": code, "transaction_id": posting.transaction_id, "event_id": event.event_id}
    if shortfall_minor:
        await payments.move(conn, order, "needs_attention", event="order.needs_attention",
                            data={"reason": "return_shortfall", "shortfall_minor": shortfall_minor, **data},
                            failure_code="return_shortfall")
        log.warning("order.return_shortfall", shortfall_minor=shortfall_minor, return_code=code)
    else:
        await payments.move(conn, order, "returned", event="order.returned", data=data, failure_code=code)
    return "applied", None


async def _contradiction(conn, order: Order, event: WebhookEvent, detail: str) -> str:
    """The provider says what the order's state denies: a human decides, with the evidence."""
    if order.payment_order_status not in workflow.LIVE | {"completed", "failed"}:
        return await _hold(conn, order, event)
    await payments.move(conn, order, "needs_attention", event="order.needs_attention",
                        data={"reason": "psp_event_contradicts", "detail": detail, **_evidence(event)},
                        failure_code="psp_event_contradicts")
    log.error("event.contradicts_order", detail=detail)
    return "contradiction"


async def _hold(conn, order: Order, event: WebhookEvent) -> str:
    """The order waits for a human already: put the event beside it for them, change nothing."""
    await events.append(conn, user_id=order.user_id, payment_id=order.payment_id,
                        payment_order_id=order.payment_order_id, type="order.psp_event_held", data=_evidence(event))
    return "held"


def _evidence(event: WebhookEvent) -> dict:
    return {"event_id": event.event_id, "event_type": event.type, "event_kind": event.kind,
            "psp_status": event.result.status if event.result else None, "psp_reference": event.psp_reference,
            "return_code": event.return_code, "amount_minor": event.amount_minor, "currency": event.currency}


async def _keep_success(conn, ctx, connector: str, event_id: str,
                        error: PaycellError) -> tuple[Order | None, str | None]:
    """The ledger refused the settlement of a success the event reports: keep the PSP's word
    (psp_succeeded, `settle` retries the posting) and mark the event applied, as `charge` does.
    Any other refusal propagates: the message is retried."""
    stored = await inbox.lock(conn, connector, event_id)
    if stored is None or stored.applied_at is not None:
        return None, None
    result = stored.event.result
    if stored.event.kind != "outcome" or result is None or result.status != "succeeded":
        raise error
    order = await _lock_order(conn, connector, stored)
    if order is None or order.payment_order_status not in outcome.ACTIVE:
        raise error
    follow_up = await outcome.record_posting_failed(conn, ctx, order, result, str(error))
    await inbox.mark_applied(conn, stored, result="applied", order_id=order.payment_order_id,
                             note=f"posting refused: {error}")
    return order, follow_up
