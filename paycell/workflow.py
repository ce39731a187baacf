"""The payment order state machine: one table, checked by every step under the order's lock.

Read it against the seed's order status diagram. Only states where a crash can leave an order,
or where a payment really waits, are stored; the seed's intermediate milestones (risk_checked,
reserved, psp_failed, released, posted) are written to the event log inside the same
transaction as the stored state that follows them, because every stored state costs a durable
commit and the step that resumes from them would be the same. `needs_attention` is reachable
from every live state (deadline passed, retries exhausted, ledger refused a posting after the
PSP moved money): a human resolves it.

`requires_action` waits for the customer at the provider (PayPal approval, 3-D Secure); the
provider's webhook or a poll of `charge` moves it on, and past its action deadline it fails.
A provider may still speak after an order ended: a late return or reversal moves a `completed`
order to `returned` (compensated in the ledger), and a provider's word that contradicts a
terminal state (a success after the order failed) moves it to `needs_attention`, never silently
to another outcome. When the settlement's posting fails past its retries after the PSP moved the
money, the reversal policy (paycell/reversals/policy.py) either leaves the order to a human
(`needs_attention`) or moves it to `reversing`: a reversal at the PSP is under way (its own record
and step, REVERSAL_STATES below), and `reversed` once it succeeded. `completed` and `failed` therefore have next states while staying terminal:
no step acts on them, only a provider's event (paycell/actors/apply_event.py).

`in_review` parks a payment the risk engine sent to review (paycell/reviews.py: the review
queue) until a human, or the queue's expiry policy, decides. A pay-out is reserved before it is
parked and keeps its reserve there. Its step, `proceed`, acts only on the item's resolution:
approved, the order continues exactly as an allowed one (paycell/actors/dispatch.py);
declined, it fails (`review_declined`, or `review_expired` for the expiry policy's decline) and
a pay-out's reserve is released, in the transaction that resolves the item. An approval moves
the order in_review -> in_review (its event, a short lease) and enqueues `proceed` after the
commit; the sweeper re-drives a lost one. While the item is open the order's lease runs to the
item's expiry and its deadline to the expiry plus PAYCELL_ORDER_DEADLINE_S, so the sweeper neither
re-drives nor fails a parked order: the expiry actor resolves it first.
"""
from __future__ import annotations

import datetime

import msgspec

# state            -> (step that acts on it, states that step may move the order to)
ORDER_STATES: dict[str, tuple[str | None, frozenset[str]]] = {
    "requested":       ("screen", frozenset({"in_review", "psp_submitting", "completed", "failed"})),
    "in_review":       ("proceed", frozenset({"in_review", "psp_submitting", "completed", "failed"})),
    "psp_submitting":  ("charge", frozenset({"psp_submitting", "psp_pending", "requires_action", "psp_succeeded",
                                            "completed", "failed"})),
    "psp_pending":     ("charge", frozenset({"psp_pending", "requires_action", "psp_succeeded", "completed",
                                            "failed"})),
    "requires_action": ("charge", frozenset({"requires_action", "psp_pending", "psp_succeeded", "completed",
                                            "failed"})),
    "psp_succeeded":   ("settle", frozenset({"completed", "reversing"})),
    "completed":       (None, frozenset({"returned", "needs_attention"})),
    "failed":          (None, frozenset({"needs_attention"})),
    "returned":        (None, frozenset()),
    "reversing":       (None, frozenset({"reversed", "needs_attention"})),  # its reversal's step acts
    "reversed":        (None, frozenset()),
    "needs_attention": (None, frozenset({"reversing"})),  # a policy reversal's dead letter replayed
}
# An operator replaying a dead letter reopens its order in the state it was left in.
REOPENABLE = frozenset({"requested", "in_review", "psp_submitting", "psp_pending", "requires_action", "psp_succeeded"})

TERMINAL = frozenset(s for s, (step, _) in ORDER_STATES.items() if step is None)
LIVE = frozenset(ORDER_STATES) - TERMINAL

# The failure code of an order whose charge stayed pending at its PSP past its deadline
# (PAYCELL_PSP_PENDING_DEADLINE_S): the polling charge step and the sweeper both give it.
PENDING_DEADLINE = "psp_pending_deadline"

# Failure codes paycell gives an order itself; any other code of a failed order is its provider's
# decline (the model's decline counts: paycell/risk/history_pg.py; the training labels).
PLATFORM_FAILURES = frozenset({
    "amount_over_risk_limit", "daily_limit_exceeded", "risk_blocked", "review_declined", "review_expired",
    "review_missing", "insufficient_funds",
    "psp_no_connector", PENDING_DEADLINE, "deadline_exceeded", "retries_exhausted", "action_expired",
    "psp_event_contradicts", "return_shortfall",
})

# The payment's status as the API shows it, from its (single) order's state.
PAYMENT_STATUS = {"requires_action": "requires_action", "completed": "succeeded", "returned": "returned",
                  "failed": "failed", "needs_attention": "needs_attention", "reversing": "reversing",
                  "reversed": "reversed"}

# A reversal (paycell/reversals: a refund of a pay-in, the recall of a pay-out) has states of its
# own, checked by its step `reverse` under the order's lock, and by Postgres (migration 0024):
#   requested       recorded, its amount taken from what remains of the payment; nothing sent
#   psp_submitting  asked of the PSP (attempt n); an attempt after the first asks its status first
#   succeeded       the PSP reversed it and the compensating transaction is posted (one commit)
#   failed          the PSP refused it: nothing moved, its amount remains reversible
#   needs_attention the PSP's answer stayed unknown past the retries, or the posting was refused
REVERSAL_STATES: dict[str, tuple[str | None, frozenset[str]]] = {
    "requested":       ("reverse", frozenset({"psp_submitting", "failed", "needs_attention"})),
    "psp_submitting":  ("reverse", frozenset({"psp_submitting", "succeeded", "failed", "needs_attention"})),
    "succeeded":       (None, frozenset()),
    "failed":          (None, frozenset()),
    "needs_attention": (None, frozenset({"psp_submitting"})),
}
REVERSAL_LIVE = frozenset(s for s, (step, _) in REVERSAL_STATES.items() if step is not None)


class IllegalTransition(Exception):
    """A step tried a move the table does not allow: a bug in the step."""


def step_for(state: str) -> str | None:
    """The step (actor name) that moves an order on from `state`; None for terminal states."""
    return ORDER_STATES[state][0]


def check_transition(current: str, to: str) -> None:
    if to == "needs_attention" and current in LIVE:
        return
    if current == "needs_attention" and to in REOPENABLE:
        return
    if to not in ORDER_STATES[current][1]:
        raise IllegalTransition(f"order cannot move from {current} to {to}")


def payment_status(order_state: str) -> str:
    return PAYMENT_STATUS.get(order_state, "processing")


def check_reversal_transition(current: str, to: str) -> None:
    if to not in REVERSAL_STATES[current][1]:
        raise IllegalTransition(f"reversal cannot move from {current} to {to}")


def reversed_status(kind: str, amount_minor: int, reversed_minor: int) -> str:
    """The status of a completed payment of which `reversed_minor` is reversed (succeeded reversals)."""
    if reversed_minor <= 0:
        return "succeeded"
    if reversed_minor < amount_minor:
        return "partially_refunded"
    return "refunded" if kind == "payin" else "reversed"


class Order(msgspec.Struct, kw_only=True):
    """A payment order as the steps see it (one row of payment_order)."""
    payment_order_id: str
    payment_id: str
    user_id: str
    kind: str
    payment_option: str
    from_acct: str
    to_acct: str
    amount_minor: int
    currency: str
    payment_order_status: str
    ledger_updated: bool
    wallet_updated: bool
    psp: str | None
    psp_reference: str | None
    attempt: int
    psp_candidates: list[str] | None = None  # the connectors `screen` found for it, in order
    psp_attempt_no: int = 0  # the current psp_attempt row (0 before any)
    psp_attempt_from: int = 0  # `attempt` when the current connector got the order
    psp_unknown_at: datetime.datetime | None = None  # when its last call with an unknown outcome was given up on
    deadline_at: datetime.datetime | None = None
    created_at: datetime.datetime | None = None  # when its payment was accepted
