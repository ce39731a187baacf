"""Stripe's itemized balance change report (`balance_change_from_activity.itemized.3`), read by
column name: the default columns (balance_transaction_id, created_utc, available_on_utc, currency,
gross, fee, net, reporting_category, description) and, when the report run asked for them,
payment_intent_id, charge_id, source_id and payment_metadata[paycell_order_id].

Amounts are decimal strings in MAJOR units, negative for money leaving the balance, currencies in
lower case; gross - fee must equal net on every line (a line that says otherwise is refused).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import IO

from paycell.errors import SettlementFileRejected
from paycell.psp.stripe.wire import ORDER_ID_KEY
from paycell.reconcile.formats import (Line, cell, check_width, currency, major_to_minor, opened, rows,
                                       utc_time)

WHAT = "Stripe itemized balance change report"
REQUIRED = ("balance_transaction_id", "created_utc", "currency", "gross", "fee", "net", "reporting_category")
ORDER_COLUMN = f"payment_metadata[{ORDER_ID_KEY}]"
CATEGORY = {"charge": "payin", "payment": "payin", "refund": "refund", "refund_failure": "other",
            "dispute": "return", "dispute_reversal": "return_reversal", "fee": "fee", "payout": "transfer_out",
            "payout_reversal": "other", "transfer": "payout", "transfer_reversal": "other", "adjustment": "other"}


def parse(f: IO[str]) -> Iterator[Line]:
    it = rows(f, what=WHAT)
    index, width = opened(it, REQUIRED, what=WHAT)
    i_cur, i_gross, i_fee, i_net = index["currency"], index["gross"], index["fee"], index["net"]
    i_created, i_category = index["created_utc"], index["reporting_category"]
    for line, cells in it:
        check_width(cells, width, line)
        code = currency(cells[i_cur], line)
        gross = major_to_minor(cells[i_gross], code, line)
        fee = major_to_minor(cells[i_fee], code, line)
        if gross - fee != major_to_minor(cells[i_net], code, line):
            raise SettlementFileRejected("gross - fee differs from net", line=line)
        reference = (cell(cells, index, "payment_intent_id") or cell(cells, index, "charge_id")
                     or cell(cells, index, "source_id") or cells[index["balance_transaction_id"]])
        yield Line(line, CATEGORY.get(cells[i_category].strip(), "other"), reference or None,
                   cell(cells, index, ORDER_COLUMN) or None, abs(gross), code, fee,
                   utc_time(cells[i_created], line))
