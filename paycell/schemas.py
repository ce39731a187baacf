"""The API's request and response shapes (msgspec Structs). Amounts are decimal strings."""
from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from paycell.money import format_amount
from paycell.public_events import public_data


class PaymentIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """POST /payments/payment/v1 — the seed's body. `payment_id` is the checkout UUID."""
    payment_id: str
    user_id: str
    from_acct: str
    to_acct: str
    amount: str
    currency: str
    payment_option: str


class AttemptView(msgspec.Struct, kw_only=True):
    """One connector an order was sent to: `routed` by the routing table, moved on because the
    first one's breaker was open (`breaker_open`), or `failover` once it said it holds no such payment."""
    attempt_no: int
    connector: str
    reason: str


class OrderView(msgspec.Struct, kw_only=True):
    payment_order_id: str
    payment_order_status: str
    amount: str
    currency: str
    ledger_updated: bool
    wallet_updated: bool
    psp: str | None
    psp_reference: str | None
    attempt: int
    failure_code: str | None = None
    psp_attempts: list[AttemptView] = []


class EventView(msgspec.Struct, kw_only=True):
    """One event of a payment's history as its user sees it: `data` holds only the keys
    paycell.public_events allows for its type."""
    type: str
    occurred_at: str
    payment_order_id: str | None
    data: dict


class NextAction(msgspec.Struct, kw_only=True):
    """What the customer must do for a payment in `requires_action`: open `url` (the provider's
    approval or 3-D Secure page), which sends them back once done."""
    type: str = "redirect_to_url"
    url: str


class PaymentView(msgspec.Struct, kw_only=True, tag_field="object", tag="payment"):
    payment_id: str
    user_id: str
    kind: str
    status: str
    amount: str
    currency: str
    from_acct: str
    to_acct: str
    payment_option: str
    is_complete: bool
    failure_code: str | None = None
    next_action: NextAction | None = None  # set while `status` is requires_action
    # What reversals took back (a pay-in's refunds, a pay-out's recall), in the payment's currency;
    # status then says partially_refunded, refunded or reversed.
    refunded: str = "0"
    created_at: str
    updated_at: str
    orders: list[OrderView]


class PaymentDetail(PaymentView, kw_only=True, tag="payment"):
    """GET of one payment: the view plus its event history."""
    events: list[EventView]


class PaymentList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[PaymentView]
    has_more: bool
    next_cursor: str | None


class BalanceView(msgspec.Struct, kw_only=True):
    currency: str
    available: str
    reserved: str


class WalletView(msgspec.Struct, kw_only=True):
    object: str = "wallet"
    user_id: str
    account: str
    balances: list[BalanceView]


def _iso(ts) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def order_view(row) -> OrderView:
    cur = row["currency"].strip()
    return OrderView(payment_order_id=row["payment_order_id"], payment_order_status=row["payment_order_status"],
                     amount=format_amount(row["amount_minor"], cur), currency=cur,
                     ledger_updated=row["ledger_updated"], wallet_updated=row["wallet_updated"], psp=row["psp"],
                     psp_reference=row["psp_reference"], attempt=row["attempt"], failure_code=row["failure_code"],
                     psp_attempts=[AttemptView(**a) for a in row.get("psp_attempts") or ()])


def next_action(req, orders) -> NextAction | None:
    """The redirect a payment waiting for its customer asks for (the order's provider URL)."""
    if req["status"] != "requires_action":
        return None
    url = next((o["action_url"] for o in orders
                if o["payment_order_status"] == "requires_action" and o["action_url"]), None)
    return NextAction(url=url) if url else None


def payment_view(req, orders, events=None) -> PaymentView:
    cur = req["currency"].strip()
    fields = dict(
        payment_id=req["payment_id"], user_id=req["user_id"], kind=req["kind"], status=req["status"],
        amount=format_amount(req["amount_minor"], cur), currency=cur, from_acct=req["from_acct"],
        to_acct=req["to_acct"], payment_option=req["payment_option"], is_complete=req["is_complete"],
        failure_code=req["failure_code"], created_at=_iso(req["created_at"]), updated_at=_iso(req["updated_at"]),
        orders=[order_view(o) for o in orders], next_action=next_action(req, orders),
        refunded=format_amount(req.get("reversed_minor") or 0, cur))
    if events is None:
        return PaymentView(**fields)
    return PaymentDetail(**fields, events=[
        EventView(type=e["type"], occurred_at=_iso(e["occurred_at"]),
                  payment_order_id=str(e["payment_order_id"]) if e["payment_order_id"] else None,
                  data=public_data(e["type"], e["data"]))
        for e in events])


# -- instruments (issue 6, item 4) --

class InstrumentIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """POST /payments/instrument/v1: attach a PSP token or id. `connector` defaults to the first
    connector routed for the payment option whose tokens look like this one, else PAYCELL_PSP_DEFAULT."""
    token: str
    payment_option: str
    connector: str | None = None


class InstrumentView(msgspec.Struct, kw_only=True, tag_field="object", tag="instrument"):
    instrument_id: str          # "inst_" + 32 hex digits
    user_id: str
    connector: str
    payment_option: str
    token: str
    status: str                 # "attached" or "detached"
    created_at: str
    detached_at: str | None = None


class InstrumentList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[InstrumentView]
    has_more: bool
    next_cursor: str | None


INSTRUMENT_ID_PREFIX = "inst_"


def instrument_view(row) -> InstrumentView:
    return InstrumentView(
        instrument_id=INSTRUMENT_ID_PREFIX + row["instrument_id"].replace("-", ""), user_id=row["user_id"],
        connector=row["connector"], payment_option=row["payment_option"], token=row["provider_token"],
        status="detached" if row["detached_at"] else "attached", created_at=_iso(row["created_at"]),
        detached_at=_iso(row["detached_at"]) if row["detached_at"] else None)


# -- the review queue (issue 8): the operator API (paycell/http/reviews.py) --

class ResolveIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """POST /reviews/{review_id}/approve and /decline: an optional note (kept on the item and in
    the payment's event log). A reconciliation item also needs `action_taken`: what the operator
    did about the inconsistency (e.g. "refunded the customer", "wrote off to suspense")."""
    note: Annotated[str, msgspec.Meta(max_length=2_000)] | None = None
    action_taken: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None


class OperatorEventView(msgspec.Struct, kw_only=True):
    """One event of a payment's history as an operator sees it: everything, `data` unfiltered."""
    event_id: int
    type: str
    occurred_at: str
    payment_order_id: str | None
    data: dict


class ReviewView(msgspec.Struct, kw_only=True, tag_field="object", tag="review"):
    """A review item: what is reviewed (`kind`; a payment names its payment and order), why
    (`reasons`, and the decision's `evidence`), and who did what when."""
    review_id: str
    user_id: str
    kind: str
    state: str                  # open, claimed, approved, declined, expired
    reasons: list[str]
    evidence: dict
    payment_id: str | None = None
    payment_order_id: str | None = None
    claimed_by: str | None = None
    claimed_at: str | None = None
    resolved_by: str | None = None   # an operator, or system:expiry
    resolved_at: str | None = None
    outcome: str | None = None       # approve or decline (for an expired item: the expiry policy's)
    note: str | None = None
    action_taken: str | None = None  # a reconciliation item: what the operator did about it
    expires_at: str
    created_at: str
    payment_order_status: str | None = None  # the order's state after a resolution, and in the detail


class ReviewDetail(ReviewView, kw_only=True, tag="review"):
    """GET of one item: its payment (orders included) and the payment's full event history."""
    payment: PaymentView | None = None
    events: list[OperatorEventView] = []


class ReviewList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[ReviewView]
    has_more: bool
    next_cursor: str | None


def _iso_or_none(ts) -> str | None:
    return None if ts is None else _iso(ts)


def review_fields(item) -> dict:
    """ReviewView's fields of a review item (paycell.store.reviews.Item)."""
    return dict(review_id=item.review_id, user_id=item.user_id, kind=item.kind, state=item.state,
                reasons=list(item.reasons), evidence=item.evidence, payment_id=item.payment_id,
                payment_order_id=item.payment_order_id, claimed_by=item.claimed_by,
                claimed_at=_iso_or_none(item.claimed_at), resolved_by=item.resolved_by,
                resolved_at=_iso_or_none(item.resolved_at), outcome=item.outcome, note=item.note,
                action_taken=item.action_taken, expires_at=_iso(item.expires_at), created_at=_iso(item.created_at))


def operator_events(rows) -> list[OperatorEventView]:
    return [OperatorEventView(event_id=e["event_id"], type=e["type"], occurred_at=_iso(e["occurred_at"]),
                              payment_order_id=str(e["payment_order_id"]) if e["payment_order_id"] else None,
                              data=e["data"]) for e in rows]


# -- scheduled payments (issue 9): paycell/http/schedules.py, paycell/schedules/manage.py --

class ScheduleIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """POST /payments/scheduled-payment/v1: the payment's body (the seed's, without payment_id) plus
    its recurrence. `schedule_id` is the client's UUID for the schedule: its idempotency key.
    `recurrence`: an RFC 5545 RRULE (FREQ=MONTHLY;BYMONTHDAY=31) or hourly, daily, weekly, monthly.
    `start`: the first occurrence's local date-time in `time_zone` (an offset, if given, is
    converted). The end, optional: `count` occurrences, or `until` (a local date or date-time,
    inclusive)."""
    schedule_id: str
    user_id: str
    from_acct: str
    to_acct: str
    amount: str
    currency: str
    payment_option: str
    recurrence: Annotated[str, msgspec.Meta(max_length=300)]
    time_zone: Annotated[str, msgspec.Meta(max_length=60)]
    start: Annotated[str, msgspec.Meta(max_length=40)]
    count: Annotated[int, msgspec.Meta(ge=1, le=100_000)] | None = None
    until: Annotated[str, msgspec.Meta(max_length=40)] | None = None


class ScheduleUpdate(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """PUT /payments/scheduled-payment/v1/{schedule_id}: the fields to change (a field left out
    keeps its value; `count` or `until` null removes the end); `status` pauses (`paused`) or resumes
    (`active`) it. A resumed schedule runs from its next occurrence after now."""
    amount: str | msgspec.UnsetType = msgspec.UNSET
    recurrence: Annotated[str, msgspec.Meta(max_length=300)] | msgspec.UnsetType = msgspec.UNSET
    count: Annotated[int, msgspec.Meta(ge=1, le=100_000)] | None | msgspec.UnsetType = msgspec.UNSET
    until: Annotated[str, msgspec.Meta(max_length=40)] | None | msgspec.UnsetType = msgspec.UNSET
    status: Literal["active", "paused"] | msgspec.UnsetType = msgspec.UNSET


class RunView(msgspec.Struct, kw_only=True):
    """One occurrence that came: `pending` (its payment is processing), `succeeded`, `failed`,
    `returned`, `needs_attention`, or `skipped` (missed while no scheduler ran: only the latest
    missed occurrence is run)."""
    occurrence_at: str
    outcome: str
    payment_id: str | None = None
    failure_code: str | None = None


class ScheduleView(msgspec.Struct, kw_only=True, tag_field="object", tag="scheduled_payment"):
    schedule_id: str
    user_id: str
    kind: str
    status: str                   # active, paused, ended, cancelled
    paused_reason: str | None = None  # paused_by_user, failures_max
    consecutive_failures: int
    amount: str
    currency: str
    from_acct: str
    to_acct: str
    payment_option: str
    recurrence: str
    time_zone: str
    start: str                    # local date-time in time_zone
    count: int | None = None
    until: str | None = None      # local date-time in time_zone
    next_occurrences: list[str]   # up to five, UTC
    last_runs: list[RunView]      # newest first
    created_at: str
    updated_at: str


class ScheduleList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[ScheduleView]
    has_more: bool
    next_cursor: str | None


# -- reversals (issue 13) --

class ReversalIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """POST /payments/payment/v1/{payment_id}/reversals (operators): reverse `amount` of the
    payment of `user_id` (a payment id is the client's own UUID: the user names whose)."""
    user_id: str
    amount: str
    currency: str
    reason: str


class ReversalView(msgspec.Struct, kw_only=True, tag_field="object", tag="reversal"):
    reversal_id: str
    payment_id: str
    payment_order_id: str
    user_id: str
    origin: str              # operator, or policy (a posting that failed after the PSP moved the money)
    requested_by: str
    amount: str
    currency: str
    reason: str
    status: str              # requested, psp_submitting, succeeded, failed, needs_attention
    psp: str
    psp_reference: str | None = None
    failure_code: str | None = None
    created_at: str
    updated_at: str


class ReversalList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[ReversalView]


def reversal_view(r) -> ReversalView:
    return ReversalView(reversal_id=r.reversal_id, payment_id=r.payment_id, payment_order_id=r.payment_order_id,
                        user_id=r.user_id, origin=r.origin, requested_by=r.requested_by,
                        amount=format_amount(r.amount_minor, r.currency), currency=r.currency, reason=r.reason,
                        status=r.state, psp=r.psp, psp_reference=r.psp_reference, failure_code=r.failure_code,
                        created_at=_iso(r.created_at), updated_at=_iso(r.updated_at))
