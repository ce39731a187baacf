"""The simulator's settlement report: Stripe's itemized balance change report
(`balance_change_from_activity.itemized.3`) for one UTC day, as a report run asked for its
default columns plus `charge_id`, `payment_intent_id` and `payment_metadata[paycell_order_id]`
(real Stripe takes the extra columns as the run's `parameters[columns]`).

As in Stripe's reports, amounts are decimal strings in MAJOR units (12.30), negative for money
leaving the balance, currencies lower case, times `YYYY-MM-DD HH:MM:SS` in UTC.
"""
from __future__ import annotations

import csv
import datetime
import io
from dataclasses import dataclass

from paycell.money import format_amount
from paycell.psp.stripe.wire import ORDER_ID_KEY

COLUMNS = ("balance_transaction_id", "created_utc", "available_on_utc", "currency", "gross", "fee", "net",
           "reporting_category", "description", "charge_id", "payment_intent_id",
           f"payment_metadata[{ORDER_ID_KEY}]")

# Stripe's US list prices, in minor units: cards 2.9% + 30, ACH Direct Debit 0.8% capped at 5.00,
# a dispute 15.00.
CARD_FEE_PER_MILLE = 29
CARD_FEE_FIXED_MINOR = 30
ACH_FEE_PER_MILLE = 8
ACH_FEE_MAX_MINOR = 500
DISPUTE_FEE_MINOR = 1500


@dataclass(frozen=True)
class BalanceTransaction:
    id: str
    created_s: float
    available_on_s: float
    currency: str  # upper case ISO 4217
    gross_minor: int
    fee_minor: int
    reporting_category: str  # charge, dispute, ...
    description: str
    charge_id: str
    payment_intent_id: str
    order_id: str


def fee_minor(payment_method_type: str, amount_minor: int) -> int:
    """Stripe's fee for a payment of `amount_minor`, rounded half up to the minor unit."""
    if payment_method_type == "us_bank_account":
        return min((amount_minor * ACH_FEE_PER_MILLE + 500) // 1000, ACH_FEE_MAX_MINOR)
    return (amount_minor * CARD_FEE_PER_MILLE + 500) // 1000 + CARD_FEE_FIXED_MINOR


def _utc(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def itemized_csv(transactions: list[BalanceTransaction], day: datetime.date) -> tuple[str, bytes]:
    """(content type, CSV) of the balance transactions created on `day` (UTC)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for txn in sorted(transactions, key=lambda t: (t.created_s, t.id)):
        created = datetime.datetime.fromtimestamp(txn.created_s, datetime.timezone.utc)
        if created.date() != day:
            continue
        net_minor = txn.gross_minor - txn.fee_minor
        writer.writerow((txn.id, _utc(txn.created_s), _utc(txn.available_on_s), txn.currency.lower(),
                         format_amount(txn.gross_minor, txn.currency), format_amount(txn.fee_minor, txn.currency),
                         format_amount(net_minor, txn.currency), txn.reporting_category, txn.description,
                         txn.charge_id, txn.payment_intent_id, txn.order_id))
    return "text/csv", out.getvalue().encode()
