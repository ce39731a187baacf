"""The risk step's guardrail: hard limits checked before any money moves.

The rule language (AST) and the model come with the risk-engine issue and run beside this;
these limits stay as the floor no rule can lift. Limits are per currency: the same 5,000,000
minor units are 50,000.00 USD but 5,000,000 JPY (exponent 0) and 5,000.000 KWD (exponent 3).

The daily limit sums the user's accepted payments of the last 24 h in the order's currency,
the order itself included. It is read in the statement that locks the order, and needs no lock
of its own to stay correct under concurrency: a payment counts from the moment it is accepted
(its request row commits before its screen step can run) until it fails, so of any set of
payments that pass screening, the one whose sum was read last saw all the others (each sum is
read in a snapshot taken after its own request committed), and the sum it checked covered them
all. Concurrent screens can only err on the safe side (two may each see the other still
unscreened and both be blocked). The cost is no round trip of its own: a subquery of the
screen step's locking statement (store/risk_totals.py), a range scan of the index
payment_request (user_id, created_at DESC, payment_id DESC) over the user's last 24 h.
"""
from __future__ import annotations

from paycell.config import Settings
from paycell.workflow import Order

DAY_S = 86_400


def screen(order: Order, settings: Settings) -> str | None:
    """None when the order may proceed, else the reason it is blocked. No I/O."""
    if order.amount_minor > settings.risk_amount_minor_max_by_currency[order.currency]:
        return "amount_over_risk_limit"
    return None


def screen_daily(order: Order, accepted_minor: int, settings: Settings) -> str | None:
    """None when `accepted_minor`, the user's accepted payments of the last DAY_S in the order's
    currency (this one included), stays within the daily limit; else "daily_limit_exceeded"."""
    if accepted_minor > settings.risk_daily_amount_minor_max_by_currency[order.currency]:
        return "daily_limit_exceeded"
    return None
