"""Adyen's settlement details report, read by column name (an account may reorder the columns and
add optional ones): one row per booking of a settlement batch.

Gross amounts are in the Gross Currency, net amounts and the fees (Commission, Markup, Scheme
Fees, Interchange: whichever columns are present) in the Net Currency, all in MAJOR units, one of
debit or credit filled. Creation Date is local to the row's TimeZone. Type says what a row is:
Settled (a pay-in), PaidOut (a pay-out), Refunded, Chargeback, ChargebackReversed, Fee,
MerchantPayout (the batch paid to our bank account), and others paycell does not act on.
"""
from __future__ import annotations

import datetime
import functools
import zoneinfo
from collections.abc import Iterator
from typing import IO

from paycell.errors import SettlementFileRejected
from paycell.reconcile.formats import (CURRENCY, Line, cell, check_width, currency, major_to_minor, opened,
                                       rows, utc_time)

WHAT = "Adyen settlement details report"
REQUIRED = ("Psp Reference", "Merchant Reference", "Type", "Creation Date", "Gross Currency", "Gross Debit (GC)",
            "Gross Credit (GC)", "Net Currency", "Net Debit (NC)", "Net Credit (NC)", "Batch Number")
FEE_COLUMNS = ("Commission (NC)", "Markup (NC)", "Scheme Fees (NC)", "Interchange (NC)")
CATEGORY = {"Settled": "payin", "SettledBulk": "payin", "PaidOut": "payout", "Refunded": "refund",
            "RefundedBulk": "refund", "Chargeback": "return", "SecondChargeback": "return",
            "ChargebackReversed": "return_reversal", "Fee": "fee", "MerchantPayout": "transfer_out"}


@functools.lru_cache(maxsize=64)
def _zone(name: str) -> datetime.tzinfo:
    try:
        return zoneinfo.ZoneInfo(name) if name and name != "UTC" else datetime.timezone.utc
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return datetime.timezone.utc if name in ("GMT", "") else _unknown(name)


def _unknown(name: str) -> datetime.tzinfo:
    raise SettlementFileRejected(f"unknown TimeZone {name[:40]!r}")


def parse(f: IO[str]) -> Iterator[Line]:
    it = rows(f, what=WHAT)
    index, width = opened(it, REQUIRED, what=WHAT)
    fees = [index[c] for c in FEE_COLUMNS if c in index]
    for line, cells in it:
        check_width(cells, width, line)
        kind = cells[index["Type"]].strip()
        net_code = cells[index["Net Currency"]].strip()
        gross_code = cells[index["Gross Currency"]].strip() or net_code
        code = currency(gross_code, line)
        if kind == "MerchantPayout":
            amount = (major_to_minor(cells[index["Net Debit (NC)"]], code, line)
                      - major_to_minor(cells[index["Net Credit (NC)"]], code, line))
            fee = 0
        else:
            amount = (major_to_minor(cells[index["Gross Credit (GC)"]], code, line)
                      - major_to_minor(cells[index["Gross Debit (GC)"]], code, line))
            fee = 0
            if fees:
                fee_code = currency(net_code or gross_code, line)
                if fee_code != code:
                    raise SettlementFileRejected(f"fees in {fee_code} for an amount in {code}", code=CURRENCY,
                                                 line=line)
                fee = sum(major_to_minor(cells[i], code, line) for i in fees)
        created = utc_time(cells[index["Creation Date"]], line)
        if created is not None:
            created = created.replace(tzinfo=_zone(cell(cells, index, "TimeZone").strip())) \
                .astimezone(datetime.timezone.utc)
        yield Line(line, CATEGORY.get(kind, "other"), cells[index["Psp Reference"]].strip() or None,
                   cells[index["Merchant Reference"]].strip() or None, abs(amount), code, fee, created)
