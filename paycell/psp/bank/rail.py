"""The simulated ACH rail behind the bank simulator: payment orders, the test bank accounts that
decide their fate, and the lifecycle each one follows on the simulator's clock.

Lifecycle (Modern Treasury's statuses):

    approved --cut-off--> processing -> sent --settlement day--> completed --(late return)--> returned
       |            \\-> failed                       \\-> returned (refused before it settled)
       \\-> cancelled (PATCH status=cancelled before the cut-off)

The outcome comes from the receiving account's number, as in Modern Treasury's sandbox:
    123456789       completes (any number not matched below also completes)
    100XX           returned with ACH code RXX (10001: R01 insufficient funds, 10002: R02 account
                    closed, 10003: R03 no account, 10004: R04 invalid number, 10008: R08 payment
                    stopped, 10016: R16 frozen, 10020: R20 non-transaction account ...) on the
                    settlement day, instead of completing. The unauthorised-debit codes R07, R10 and
                    R29 (10007, 10010, 10029) complete first and come back `LATE_RETURN_S` later
                    (NACHA allows them 60 days).
    11111111X...X   fails at the cut-off (the bank refuses the entry)
The simulator starts with one external account per documented number (`TEST_ACCOUNTS`); its id is
`external_account_id(number)` and is what a user attaches as their `bank_account` token.

Timing: a payment order goes out with the first business-day cut-off at or after its creation
(calendar.py); credits settle 1 business day later, debits 2. Transitions happen when the clock
is advanced and whenever a payment order is read; each one sends a signed webhook.
"""
from __future__ import annotations

import datetime
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from paycell.psp.bank import calendar, wire
from paycell.psp.simkit import SimCharge, SimKit, SimRefund

SETTLEMENT_BUSINESS_DAYS = {"credit": 1, "debit": 2}
LATE_RETURN_S = 30 * 86_400
LATE_RETURN_CODES = frozenset({"R07", "R10", "R29"})
SUCCESS_ACCOUNT = "123456789"
TEST_ACCOUNTS = (SUCCESS_ACCOUNT, "10001", "10002", "10003", "10004", "10007", "10008", "10010", "10016", "10020",
                 "10029", "111111110")
PAYMENT_ORDERS_MAX = 100_000  # the simulator answers 503 beyond these; POST /_sim/reset
ACCOUNTS_MAX = 10_000
RETURN_REASONS = {
    "R01": "Insufficient Funds", "R02": "Account Closed", "R03": "No Account/Unable to Locate Account",
    "R04": "Invalid Account Number Structure", "R07": "Authorization Revoked by Customer",
    "R08": "Payment Stopped", "R10": "Customer Advises Not Authorized", "R16": "Account Frozen",
    "R20": "Non-Transaction Account", "R29": "Corporate Customer Advises Not Authorized",
}

_RETURN_ACCOUNT = re.compile(r"100([0-9]{2})")
_FAIL_ACCOUNT = re.compile(r"11111111[0-9]+")


def external_account_id(account_number: str) -> str:
    """The id of the simulator's external account for a test account number (documented, stable)."""
    return f"ea000000-0000-4000-8000-{int(account_number):012d}"


def counterparty_id(account_number: str) -> str:
    return f"c0000000-0000-4000-8000-{int(account_number):012d}"


class ExternalAccount(msgspec.Struct, kw_only=True):
    id: str
    object: str = "external_account"
    account_type: str = "checking"
    counterparty_id: str
    party_name: str
    account_number: str  # the simulator's own record; the provider shows only the last four digits
    routing_number: str = "121141822"
    live_mode: bool = False


@dataclass
class Fate:
    """What the rail will do with a payment order to one account."""

    fails: bool = False
    return_code: str | None = None

    @property
    def returns_late(self) -> bool:
        return self.return_code in LATE_RETURN_CODES


def fate(account_number: str) -> Fate:
    if m := _RETURN_ACCOUNT.fullmatch(account_number):
        return Fate(return_code=f"R{m[1]}")
    if _FAIL_ACCOUNT.fullmatch(account_number):
        return Fate(fails=True)
    return Fate()


@dataclass
class Scheduled:
    order: wire.PaymentOrder
    fate: Fate
    process_at_s: float
    settle_at_s: float
    order_key: str
    return_at_s: float | None = None
    posted_at_s: float | None = None
    returned_at_s: float | None = None


# (event name, the payment order as it is after the event)
Emit = Callable[[str, wire.PaymentOrder], None]


@dataclass
class Rail:
    kit: SimKit
    internal_account_id: str
    emit: Emit
    accounts: dict[str, ExternalAccount] = field(default_factory=dict)
    orders: dict[str, Scheduled] = field(default_factory=dict)  # by payment order id, in creation order

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.orders.clear()
        self.accounts.clear()
        for number in TEST_ACCOUNTS:
            self.add_account(number, f"Test account {number}")

    def add_account(self, account_number: str, party_name: str, counterparty: str | None = None) -> ExternalAccount:
        account = ExternalAccount(id=str(uuid.uuid4()) if counterparty else external_account_id(account_number),
                                  counterparty_id=counterparty or counterparty_id(account_number),
                                  party_name=party_name, account_number=account_number)
        self.accounts[account.id] = account
        return account

    def create(self, *, direction: wire.Direction, amount: int, currency: str, receiving: ExternalAccount,
               metadata: dict[str, str], description: str | None, order_key: str) -> wire.PaymentOrder:
        now_s = self.kit.clock.now_s()
        day = calendar.file_day(now_s)
        stamp = _stamp(now_s)
        order = wire.PaymentOrder(
            id=str(uuid.uuid4()), type="ach", direction=direction, amount=amount, currency=currency,
            status="approved", originating_account_id=self.internal_account_id, receiving_account_id=receiving.id,
            counterparty_id=receiving.counterparty_id, metadata=dict(metadata),
            effective_date=calendar.add_business_days(day, SETTLEMENT_BUSINESS_DAYS[direction]).isoformat(),
            created_at=stamp, updated_at=stamp)
        self.orders[order.id] = Scheduled(
            order=order, fate=fate(receiving.account_number), process_at_s=calendar.cutoff_s(day),
            settle_at_s=calendar.settlement_s(day, SETTLEMENT_BUSINESS_DAYS[direction]), order_key=order_key)
        self.kit.record(SimCharge(reference=order.id, order_key=order_key,
                                  direction="payin" if direction == "debit" else "payout", amount_minor=amount,
                                  currency=currency, status="pending", created_s=now_s, updated_s=now_s))
        return order

    def advance(self) -> None:
        """Make every transition that is due by the simulator's clock."""
        now_s = self.kit.clock.now_s()
        for scheduled in list(self.orders.values()):
            while self._step(scheduled, now_s):
                pass

    def _step(self, s: Scheduled, now_s: float) -> bool:
        status = s.order.status
        if status == "approved" and now_s >= s.process_at_s:
            if s.fate.fails:
                self._move(s, "failed", "failed", s.process_at_s, vendor_failure_reason="Simulated failure")
            else:
                self._move(s, "processing", "begin_processing", s.process_at_s)
                self._move(s, "sent", "finish_processing", s.process_at_s)
        elif status == "sent" and now_s >= s.settle_at_s:
            if s.fate.return_code and not s.fate.returns_late:
                self._return(s, s.settle_at_s)
            else:
                s.posted_at_s = s.settle_at_s
                self._move(s, "completed", "completed", s.settle_at_s, transaction_ids=[str(uuid.uuid4())])
                if s.fate.returns_late:
                    s.return_at_s = s.settle_at_s + LATE_RETURN_S
        elif status == "completed" and s.return_at_s is not None and now_s >= s.return_at_s:
            self._return(s, s.return_at_s)
        else:
            return False
        return True

    def _return(self, s: Scheduled, at_s: float) -> None:
        code = s.fate.return_code
        returned = wire.ReturnObject(id=str(uuid.uuid4()), code=code, reason=RETURN_REASONS.get(code, "Returned"),
                                     amount=s.order.amount, currency=s.order.currency, created_at=_stamp(at_s))
        s.returned_at_s = at_s
        self._move(s, "returned", "returned", at_s, current_return=returned)

    def _move(self, s: Scheduled, status: str, event: str, at_s: float, **changes) -> None:
        s.order = msgspec.structs.replace(s.order, status=status, updated_at=_stamp(at_s), **changes)
        charge = self.kit.charges[s.order.id]
        if status == "completed":
            self.kit.update(s.order.id, "succeeded")
            refunds = s.order.metadata.get(wire.REFUND_OF_KEY)
            if refunds is not None:  # a credit that refunds an earlier debit (paycell's reversal)
                self.kit.record_refund(SimRefund(
                    reference=s.order.id, charge_reference=s.order.id, order_key=refunds,
                    key=s.order.metadata.get(wire.REVERSAL_ID_KEY, s.order.id), amount_minor=s.order.amount,
                    currency=s.order.currency, status="succeeded", created_s=at_s))
        elif status == "returned":
            late = s.posted_at_s is not None
            self.kit.update(s.order.id, "returned" if late else "declined", return_code=s.fate.return_code)
        elif status in ("failed", "cancelled", "denied"):
            self.kit.update(s.order.id, "cancelled" if status == "cancelled" else "declined")
        charge.updated_s = at_s
        self.emit(event, s.order)

    def cancel(self, order_id: str) -> bool:
        """Cancel a payment order that has not gone to the bank yet; False once it has."""
        s = self.orders[order_id]
        if s.order.status != "approved":
            return False
        self._move(s, "cancelled", "cancelled", self.kit.clock.now_s())
        return True

    def find(self, order_id: str) -> wire.PaymentOrder | None:
        scheduled = self.orders.get(order_id)
        return scheduled.order if scheduled else None


def _stamp(t_s: float) -> str:
    return wire.timestamp(datetime.datetime.fromtimestamp(t_s, datetime.timezone.utc))
