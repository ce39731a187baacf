"""The bank rail (Modern Treasury Payment Orders, ACH) for the conformance suite.

Tokens are the simulator's seeded external account ids (paycell.psp.bank.rail: the account number
sits in the id's last group). Nothing on an ACH rail succeeds or declines at once: every payment
order is `pending` until the simulator's clock passes the next business-day cut-off and its
settlement day, so a scenario must advance the clock by `settle_after_s` before it expects an
outcome, declines included (they are returns on the settlement day). `settle_after_s` holds from
any starting moment (created just after a Friday cut-off: Monday's file, Wednesday's posting).
The late return (R10) comes `rail.LATE_RETURN_S` after settlement; `return_after_s` is counted
from the submission, so it also holds when counted from the success.
"""
from __future__ import annotations

from paycell.psp.bank.rail import LATE_RETURN_S, SUCCESS_ACCOUNT, external_account_id
from tests.psp.drivers.base import Driver

SETTLE_AFTER_S = 5 * 86_400

DRIVER = Driver(
    connector="bank",
    sim_prefix="/bank",
    option="bank_account",
    currency="USD",
    payin_ok=external_account_id(SUCCESS_ACCOUNT),
    payout_ok=external_account_id(SUCCESS_ACCOUNT),
    declines={
        "insufficient_funds": external_account_id("10001"),
        "account_closed": external_account_id("10002"),
        "no_account": external_account_id("10003"),
        "invalid_account_number": external_account_id("10004"),
        "payment_failed": external_account_id("111111110"),
    },
    pending_ok=("bank_account", external_account_id(SUCCESS_ACCOUNT)),
    settle_after_s=SETTLE_AFTER_S,
    late_return=("bank_account", external_account_id("10010")),
    return_after_s=SETTLE_AFTER_S + LATE_RETURN_S,
    return_code="R10",
    # A refund of a debit is a new ACH credit: pending until the rail settles it (credits: 1 business
    # day after the next cut-off). A completed pay-out has passed its cut-off: never recalled.
    refunds=True,
    refund_settle_after_s=SETTLE_AFTER_S,
)
