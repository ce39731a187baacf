"""What the connector conformance suite (tests/psp/test_conformance.py) needs to know of one
connector: its name, the tokens its simulator reads as each outcome, and how a customer acts at
it. One module per connector beside this one defines `DRIVER`; the suite runs every scenario
for each driver (as hyperswitch runs one scenario list against every connector).

A token is what a user attaches through `POST /payments/instrument/v1` with `connector=<name>`
and `payment_option=<option>` and names in a payment's from_acct (pay-in) or to_acct (pay-out).
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp


@dataclass(frozen=True)
class Driver:
    connector: str
    sim_prefix: str  # where `paycell psp-sim` serves its simulator: "/stripe"
    option: str  # the payment option of the main scenarios: "card"
    currency: str  # "USD"
    payin_ok: str  # a token the simulator pays in from at once
    payout_ok: str | None  # a token it pays out to at once; None when the connector has no pay-outs
    declines: dict[str, str] = field(default_factory=dict)  # paycell decline code -> token
    # A pay-in that stays pending until the simulator's clock passes `settle_after_s`, then succeeds
    # (ACH), and one that succeeds and is returned later (`return_code`), after `return_after_s`.
    pending_ok: tuple[str, str] | None = None  # (payment option, token)
    settle_after_s: float = 0.0
    late_return: tuple[str, str] | None = None  # (payment option, token)
    return_after_s: float = 0.0
    return_code: str | None = None
    # A pay-in that needs the customer (3-D Secure, PayPal approval), and how the test acts as the
    # customer: given an HTTP session and the action URL paycell returned, approve it.
    action: tuple[str, str] | None = None  # (payment option, token)
    approve: Callable[[aiohttp.ClientSession, str], Awaitable[None]] | None = None
    # Reversals (issue 13): whether the connector refunds a completed pay-in (in part too), and
    # recalls a completed pay-out (whole), at its provider.
    refunds: bool = False
    recalls_payouts: bool = False
    refund_refused: str | None = None  # a pay-in token whose refunds the provider refuses
    refund_settle_after_s: float = 0.0  # a refund pending at the provider ends once its clock passes this
