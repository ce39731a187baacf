"""The review queue: what a human must decide on, who decided what and when.

The risk engine's `review` parks a payment (paycell/workflow.py: `in_review`): the screen step
reserves a pay-out first (an insufficient-funds pay-out fails as before instead of being parked),
opens one review_item for the order (once: unique per order, so a redelivered screen message
cannot open two) with the assessment's event data as its evidence, and moves the order to
`in_review`, all in one transaction. Operators (the `operator` role: paycell/http/reviews.py,
`paycell reviews`) list, claim and resolve items:

    open --claim--> claimed --approve|decline--> approved | declined
      \\____________________approve|decline____/
    open | claimed --past expires_at--> expired (resolved_by `system:expiry`, outcome: the policy)

- approve: the item is resolved and the order moves in_review -> in_review with its event
  (`order.review_approved`: who, the review id, the note), a fresh deadline and a short lease, in
  one transaction; after the commit the `proceed` step continues it exactly as an allowed payment
  (paycell/actors/dispatch.py). A lost message is re-driven by the sweeper once the lease runs out.
- decline: the item is resolved and the order fails `review_declined` (a pay-out's reserve is
  released) in one transaction, with the event `order.review_declined` (who, the review id).
- expiry: the expiry actor (paycell/actors/expire_reviews.py, every minute) resolves every
  unresolved item past `expires_at` (PAYCELL_REVIEW_EXPIRY_S after it opened) with
  PAYCELL_REVIEW_EXPIRY_ACTION; a declined payment fails `review_expired`.
A resolution is final (the database refuses any change to a resolved item). An operator may
resolve an item unclaimed or claimed by themselves, or one whose claim by another has lapsed
(PAYCELL_REVIEW_CLAIM_S); never an item about their own payment (403).

Locks: order first, then item (the screen step holds the order when it opens the item; `proceed`
holds it when it reads the item), so a resolution and a step never deadlock. The expiry runner
takes both with SKIP LOCKED: two runners (or a runner and an operator) never wait on each other
and never resolve an item twice; whatever one skips, the next minute's run takes.

Addressing: an item's key is (user_id, review_id), the user leading as on every user-scoped table
(Citus shards by it). The API and the CLI name an item by its review_id alone, a random UUID:
operators do not know, and should not have to type, whose payment an item is. One index probe
(review_item_by_id) finds the user; everything after it is keyed by (user_id, review_id). Under
Citus that probe is a fan-out read to every shard (an operator's action, rare), and every write
after it a single-shard transaction, colocated with the payment's rows.
"""
from __future__ import annotations

import datetime
import uuid

import asyncpg
import msgspec
import structlog

from paycell import postings
from paycell.actors import dispatch
from paycell.config import Settings
from paycell.errors import InvalidRequest, NotFound, ReviewClaimed, ReviewOwnSubject, ReviewResolved
from paycell.store import events, payments
from paycell.store import reviews as store
from paycell.workflow import Order

log = structlog.get_logger("paycell.reviews")

EXPIRY = "system:expiry"  # resolved_by of an item the expiry policy resolved
DECLINED = "review_declined"  # the failure code of a payment a reviewer declined
EXPIRED = "review_expired"  # ... and of one the expiry policy declined
EXPIRE_BATCH_MAX = 500
NOTE_CHARS_MAX = 2_000
ACTIONS = ("approve", "decline")
RECONCILIATION = "reconciliation"  # the kind of an item reconciliation queued (paycell/reconcile/fixes.py)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def parse_id(review_id: str) -> str:
    """The canonical form of a review id (a UUID); NotFound for anything else."""
    try:
        return str(uuid.UUID(review_id))
    except (ValueError, TypeError, AttributeError):
        raise NotFound("no such review") from None


async def park(conn: asyncpg.Connection, settings: Settings, order: Order, *, evidence: dict,
               reasons: list[str], milestones: tuple[tuple[str, dict], ...] = ()) -> str:
    """Park the locked order (in `requested`) for review, in the caller's transaction: reserve a
    pay-out (InsufficientFunds propagates: the caller fails the order as for an allowed one),
    open its item, move it to `in_review` with its lease at the item's expiry and its deadline
    PAYCELL_ORDER_DEADLINE_S after that. Returns the review id."""
    steps = list(milestones)
    if order.kind == "payout":
        posting = await postings.reserve(conn, order, system_slices=settings.system_account_slices)
        steps.append(("order.reserved", {"transaction_id": posting.transaction_id}))
    expires_at = _now() + datetime.timedelta(seconds=settings.review_expiry_s)
    review_id, _ = await store.insert_payment_item(conn, user_id=order.user_id, payment_id=order.payment_id,
                                                   order_id=order.payment_order_id, reasons=reasons,
                                                   evidence=evidence, expires_at=expires_at)
    await payments.move(conn, order, "in_review", event="order.in_review", milestones=tuple(steps),
                        data={"review_id": review_id, "reasons": reasons, "expires_at": expires_at.isoformat()},
                        lease_until=expires_at,
                        deadline_at=expires_at + datetime.timedelta(seconds=settings.order_deadline_s))
    log.info("order.in_review", review_id=review_id, reasons=reasons)
    return review_id


async def claim(conn: asyncpg.Connection, settings: Settings, review_id: str, *, by: str) -> store.Item:
    """Claim the item for operator `by` (again: renews their claim). ReviewClaimed when another
    operator's claim has not lapsed, ReviewResolved when it is resolved, ReviewOwnSubject for
    their own payment, NotFound for no such item. The claim is written to the payment's event log
    in the same transaction."""
    review_id = parse_id(review_id)
    located = await store.locate(conn, review_id)
    if located is None:
        raise NotFound("no such review")
    if located.user_id == by:
        raise ReviewOwnSubject("an operator may not review their own payment")
    async with conn.transaction():
        item = await store.claim(conn, located.user_id, review_id, by=by, claim_s=settings.review_claim_s)
        if item is None:
            current = await store.get(conn, located.user_id, review_id)
            if current is None:
                raise NotFound("no such review")
            if current.resolved:
                raise ReviewResolved(f"review {review_id} was {current.state} by {current.resolved_by} "
                                     f"at {current.resolved_at.isoformat()}")
            raise ReviewClaimed(f"review {review_id} is claimed by {current.claimed_by} since "
                                f"{current.claimed_at.isoformat()}")
        if item.kind == "payment":
            await events.append(conn, user_id=item.user_id, type="review.claimed", payment_id=item.payment_id,
                                payment_order_id=item.payment_order_id, data={"review_id": review_id, "by": by})
    log.info("review.claimed", review_id=review_id, by=by)
    return item


class Resolved(msgspec.Struct, kw_only=True):
    item: store.Item
    order_state: str | None  # the payment order's state after the resolution (payment items)
    proceed: tuple[str, str] | None = None  # the order (user id, order id) to send to `proceed` after the commit


async def resolve(conn: asyncpg.Connection, settings: Settings, review_id: str, *, by: str, action: str,
                  note: str | None = None, action_taken: str | None = None) -> Resolved:
    """An operator's approval or decline (see the module's docstring). Raises NotFound,
    ReviewResolved, ReviewClaimed, ReviewOwnSubject; InvalidRequest for a reconciliation item
    resolved without `action_taken` (what the operator did about the inconsistency: approve
    accepts the provider's or the ledger's side as the truth once that action is done, decline
    rejects the break as not an inconsistency). The caller sends `proceed` after this returns."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
    review_id = parse_id(review_id)
    located = await store.locate(conn, review_id)
    if located is None:
        raise NotFound("no such review")
    if located.kind == RECONCILIATION and not action_taken:
        raise InvalidRequest("a reconciliation item is resolved with the action taken", field="action_taken")
    if located.user_id == by:
        raise ReviewOwnSubject("an operator may not review their own payment")
    async with conn.transaction():
        order = await payments.lock_order(conn, located.user_id, located.payment_order_id) \
            if located.payment_order_id else None
        item = await store.lock(conn, located.user_id, review_id, claim_s=settings.review_claim_s)
        if item is None:
            raise NotFound("no such review")
        if item.resolved:
            raise ReviewResolved(f"review {review_id} was {item.state} by {item.resolved_by} "
                                 f"at {item.resolved_at.isoformat()}")
        if item.state == "claimed" and item.claimed_by != by and not item.claim_lapsed:
            raise ReviewClaimed(f"review {review_id} is claimed by {item.claimed_by} since "
                                f"{item.claimed_at.isoformat()}")
        state = {"approve": "approved", "decline": "declined"}[action]
        resolved = await _resolve(conn, settings, item, order, state=state, outcome=action, by=by, note=note,
                                  action_taken=action_taken)
    log.info("review.resolved", review_id=review_id, by=by, state=state, order_state=resolved.order_state)
    return resolved


async def _resolve(conn, settings: Settings, item: store.Item, order: Order | None, *, state: str, outcome: str,
                   by: str, note: str | None, action_taken: str | None = None) -> Resolved:
    """Resolve the locked item and act on its locked order when that is still parked. An order
    that left `in_review` meanwhile (needs_attention: its deadline, a dead letter) keeps the
    decision on its item: reopened, it comes back to `in_review` and `proceed` applies it."""
    item = await store.resolve(conn, item.user_id, item.review_id, state=state, outcome=outcome, by=by, note=note,
                               action_taken=action_taken)
    if order is None or order.payment_order_status != "in_review":
        return Resolved(item=item, order_state=order and order.payment_order_status)
    data = {"review_id": item.review_id, "by": by, "outcome": outcome, **({"note": note} if note else {})}
    if outcome == "decline":
        await dispatch.fail(conn, settings, order, EXPIRED if state == "expired" else DECLINED,
                            milestones=((f"order.review_{state}", data),), data={"review_id": item.review_id})
        return Resolved(item=item, order_state=order.payment_order_status)
    # Approved: the order continues in `proceed`, from now on with a deadline of its own.
    await payments.move(conn, order, "in_review", event=f"order.review_{state}", data=data,
                        lease_until=payments.lease(settings.psp_lease_s),
                        deadline_at=_now() + datetime.timedelta(seconds=settings.order_deadline_s))
    return Resolved(item=item, order_state=order.payment_order_status,
                    proceed=(order.user_id, order.payment_order_id))


class Expiry(msgspec.Struct, kw_only=True):
    expired: int = 0
    proceed: list[tuple[str, str]] = []  # orders (user id, order id) to send to `proceed` (the policy approved them)


async def expire_due(pool: asyncpg.Pool, settings: Settings, *, limit: int = EXPIRE_BATCH_MAX) -> Expiry:
    """Resolve every unresolved item past its expiry with PAYCELL_REVIEW_EXPIRY_ACTION, one
    transaction per item, locks taken with SKIP LOCKED (held elsewhere: left to the next run).
    The caller sends `proceed` for `Expiry.proceed` after this returns."""
    result = Expiry()
    async with pool.acquire() as conn:
        due = await store.due(conn, limit=limit)
        for review_id in due:
            located = await store.locate(conn, review_id)
            if located is None:
                continue
            async with conn.transaction():
                order = None
                if located.payment_order_id:
                    order = await payments.lock_order_skip_locked(conn, located.user_id, located.payment_order_id)
                    if order is None:
                        continue
                item = await store.lock(conn, located.user_id, review_id, claim_s=settings.review_claim_s,
                                        skip_locked=True)
                if item is None or item.resolved or item.expires_at > _now():
                    continue
                resolved = await _resolve(conn, settings, item, order, state="expired",
                                          outcome=settings.review_expiry_action, by=EXPIRY,
                                          note=f"expired after {settings.review_expiry_s} s unresolved")
            result.expired += 1
            if resolved.proceed:
                result.proceed.append(resolved.proceed)
            log.info("review.expired", review_id=review_id, outcome=settings.review_expiry_action,
                     order_state=resolved.order_state)
    return result


async def hold(conn, order: Order, item: store.Item, settings: Settings) -> None:
    """A parked order re-driven while its item is unresolved: keep it parked, its lease at the
    item's expiry (or a lease from now when that has passed: the expiry actor resolves it)."""
    until = max(item.expires_at, payments.lease(settings.psp_lease_s))
    await payments.set_lease(conn, order, until)


def check_note(note: object) -> str | None:
    """A resolution's note: None or text of at most NOTE_CHARS_MAX characters."""
    if note is None:
        return None
    if not isinstance(note, str) or len(note) > NOTE_CHARS_MAX:
        raise ValueError(f"note must be text of at most {NOTE_CHARS_MAX} characters")
    return note or None
