"""The risk step's guardrail: hard limits checked before any money moves.

The rule language (AST) and the model come with the risk-engine issue and run beside this;
this limit stays as the floor no rule can lift.
"""
from __future__ import annotations

from paycell.config import Settings
from paycell.workflow import Order


def screen(order: Order, settings: Settings) -> str | None:
    """None when the order may proceed, else the reason it is blocked."""
    if order.amount_minor > settings.risk_amount_minor_max:
        return "amount_over_risk_limit"
    return None
