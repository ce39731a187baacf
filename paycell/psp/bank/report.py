"""The bank's statement of one day: every transaction posted to the originating (internal) account,
as CSV with a header row, and its parser.

The columns follow Modern Treasury's Transaction object, the record of a posted bank transaction
that it reconciles payment orders against (id, as_of_date, as_of_time, direction, amount,
currency, type, vendor_code, vendor_code_type, vendor_description, internal_account_id), plus the
reconciled payment order's id, paycell's order id from its metadata and the ACH return code.
`direction` is the account's side: `credit` money in (a settled debit payment order, the return of
a credit), `debit` money out. `amount` is an unsigned integer of cents. Read it by header name:
columns may be added or reordered.

Only postings appear: a payment order refused before it settled (failed, or returned on its
settlement day) never posted, so it has no row.
"""
from __future__ import annotations

import csv
import datetime
import io

import msgspec

from paycell.psp.bank import calendar, wire
from paycell.psp.bank.rail import Rail

COLUMNS = ("id", "as_of_date", "as_of_time", "direction", "amount", "currency", "type", "vendor_code",
           "vendor_code_type", "vendor_description", "internal_account_id", "payment_order_id",
           f"metadata[{wire.ORDER_ID_KEY}]", "return_code")
CONTENT_TYPE = "text/csv"


class Row(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    as_of_date: str
    direction: str  # credit | debit
    amount: int  # cents, unsigned
    currency: str
    payment_order_id: str
    order_id: str
    return_code: str | None


class ReportError(ValueError):
    """The report cannot be read: a required column is missing or a value is malformed."""


def build(rail: Rail, day: datetime.date) -> tuple[str, bytes]:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    postings = []
    for s in rail.orders.values():
        order = s.order
        money_in = order.direction == "debit"
        if s.posted_at_s is not None and calendar.date_of(s.posted_at_s) == day:
            postings.append((s.posted_at_s, order, money_in, None))
        if s.posted_at_s is not None and s.returned_at_s is not None and calendar.date_of(s.returned_at_s) == day:
            postings.append((s.returned_at_s, order, not money_in, order.current_return))
    for at_s, order, money_in, returned in sorted(postings, key=lambda p: p[0]):
        at = datetime.datetime.fromtimestamp(at_s, calendar.UTC)
        code = returned.code if returned else None
        description = (f"ACH RETURN {code} {returned.reason}" if returned
                       else f"ACH {'DEBIT' if money_in else 'CREDIT'} paycell {order.metadata.get(wire.ORDER_ID_KEY, '')}")
        writer.writerow((
            returned.id if returned else order.transaction_ids[0], at.date().isoformat(),
            at.time().isoformat("seconds"), "credit" if money_in else "debit", order.amount, order.currency, "ach",
            code or "", "nacha" if code else "", description, order.originating_account_id, order.id,
            order.metadata.get(wire.ORDER_ID_KEY, ""), code or "",
        ))
    return CONTENT_TYPE, out.getvalue().encode()


def parse(body: bytes) -> list[Row]:
    """The rows of a report, read by column name (extra columns and any order are fine)."""
    reader = csv.DictReader(io.StringIO(body.decode("utf-8-sig")))
    required = {"id", "as_of_date", "direction", "amount", "currency", "payment_order_id"}
    absent = required - set(reader.fieldnames or ())
    if absent:
        raise ReportError(f"bank report lacks columns {sorted(absent)}")
    rows = []
    for line in reader:
        if line["direction"] not in ("credit", "debit") or not line["amount"].isdigit():
            raise ReportError(f"bank report line {reader.line_num}: bad direction or amount")
        rows.append(Row(id=line["id"], as_of_date=line["as_of_date"], direction=line["direction"],
                        amount=int(line["amount"]), currency=line["currency"],
                        payment_order_id=line["payment_order_id"],
                        order_id=line.get(f"metadata[{wire.ORDER_ID_KEY}]") or "",
                        return_code=line.get("return_code") or None))
    return rows
