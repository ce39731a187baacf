"""What a user may see of a payment's event log: an allow-list per event type.

The event log is written for operators: it holds PSP error text (hosts, ports), Python exception
messages, ledger transaction ids (sequential: they reveal the platform's volume) and the step
that dead-lettered. The API shows a user only the keys listed here for each type; every other
key, and the data of any type not listed (a new event type is private until it is added here),
is dropped. Values must be scalars: a nested object is never shown, whatever its key.
"""
from __future__ import annotations

_MOVE = frozenset({"from", "to"})  # every state change logs the states it went between

PUBLIC_EVENT_KEYS: dict[str, frozenset[str]] = {
    "payment.requested": frozenset({"kind", "currency", "from_acct", "to_acct", "payment_option"}),
    "order.risk_checked": frozenset({"verdict"}),
    "order.reserved": frozenset(),
    "order.released": frozenset(),
    "order.psp_submitting": _MOVE | {"psp", "attempt", "breaker_open"},
    "order.psp_failover": _MOVE | {"from_psp", "psp", "reason", "attempt"},
    "order.psp_attempt_failed": _MOVE | {"attempt"},
    "order.psp_pending": _MOVE | {"psp_reference"},
    "order.psp_succeeded": frozenset({"psp_reference"}),
    "order.psp_failed": frozenset({"decline_code", "psp_reference"}),
    "order.posting_failed": _MOVE,
    "order.posted": _MOVE,
    "order.failed": _MOVE | {"reason"},
    "order.blocked": _MOVE | {"reason"},
    "order.needs_attention": _MOVE | {"reason", "psp_reference"},
    "order.reopened": _MOVE,
    # Payments that wait for their customer, and provider events after the fact (issue 7).
    "order.requires_action": _MOVE | {"psp_reference", "expires_at"},
    "order.requires_action_polled": _MOVE,
    "order.customer_acted": frozenset(),
    "order.returned": _MOVE | {"return_code"},
    # The review queue (issue 8): that a payment waits for a review and how it ended, never who
    # reviewed it, why, or the note.
    "order.in_review": _MOVE,
    "order.review_approved": _MOVE,
    "order.review_declined": frozenset(),
    "order.review_expired": _MOVE,
    # Reversals (issue 13): that a payment is being or was reversed, by how much, and how it ended;
    # never the operator, the reason given or the PSP's error text.
    "order.reversing": _MOVE,
    "order.reversed": _MOVE,
    "reversal.requested": frozenset({"reversal_id", "currency", "origin"}),
    "reversal.psp_submitting": _MOVE | {"reversal_id", "attempt"},
    "reversal.psp_pending": _MOVE | {"reversal_id", "psp_reference"},
    "reversal.succeeded": _MOVE | {"reversal_id", "amount", "currency", "psp_reference"},
    "reversal.failed": _MOVE | {"reversal_id", "reason"},
    "reversal.needs_attention": _MOVE | {"reversal_id"},
}
_SCALARS = (str, int, bool, type(None))  # float never appears in an event: money is integer minor units
_TEXT_CHARS_MAX = 100


def public_data(event_type: str, data: dict) -> dict:
    """The part of an event's `data` its user may see."""
    allowed = PUBLIC_EVENT_KEYS.get(event_type, frozenset())
    return {key: value for key, value in data.items()
            if key in allowed and isinstance(value, _SCALARS)
            and not (isinstance(value, str) and len(value) > _TEXT_CHARS_MAX)}
