"""Reading Adyen's settlement details report (CSV): one row per booking of a settlement batch.

Columns are found by their header (Adyen lets an account reorder columns and add optional ones);
amounts, written by Adyen in major units, become integers of minor units of their column's
currency (Gross ... in the Gross Currency, Net ... and the fees in the Net Currency). Rows are
returned as Adyen wrote them, in Adyen's words (Type: Settled, Refunded, Chargeback,
ChargebackReversed, PaidOut, Fee, MerchantPayout, ...): matching them with paycell's ledger is
reconciliation's work.
"""
from __future__ import annotations

import csv
import io

import msgspec

from paycell.money import AmountNotPositive, MoneyError, parse_amount

AMOUNT_MINOR_MAX = 10**15
ROWS_MAX = 1_000_000
REQUIRED = ("Psp Reference", "Merchant Reference", "Type", "Creation Date", "Gross Currency", "Gross Debit (GC)",
            "Gross Credit (GC)", "Net Currency", "Net Debit (NC)", "Net Credit (NC)", "Commission (NC)",
            "Batch Number")


class ReportError(ValueError):
    """The file is not a settlement details report paycell can read."""


class SettlementRow(msgspec.Struct, frozen=True, kw_only=True):
    psp_reference: str
    merchant_reference: str  # paycell's order id for its own payments
    type: str
    created: str  # as written, in the row's TimeZone
    modification_reference: str
    gross_currency: str
    gross_debit_minor: int
    gross_credit_minor: int
    net_currency: str
    net_debit_minor: int
    net_credit_minor: int
    commission_minor: int  # Commission + Markup + Scheme Fees + Interchange (those present), in the net currency
    batch_number: str


def parse(data: bytes) -> list[SettlementRow]:
    text = data.decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or ())]
    if missing:
        raise ReportError(f"not an Adyen settlement details report: no column {', '.join(missing)}")
    rows = []
    for line, record in enumerate(reader, start=2):
        if line > ROWS_MAX:
            raise ReportError(f"more than {ROWS_MAX} rows")
        try:
            rows.append(_row(record))
        except MoneyError as exc:
            raise ReportError(f"line {line}: {exc}") from None
    return rows


def _row(r: dict[str, str]) -> SettlementRow:
    gross, net = r["Gross Currency"], r["Net Currency"]
    fees = sum(_minor(r.get(c, ""), net) for c in ("Commission (NC)", "Markup (NC)", "Scheme Fees (NC)",
                                                    "Interchange (NC)"))
    return SettlementRow(
        psp_reference=r["Psp Reference"], merchant_reference=r["Merchant Reference"], type=r["Type"],
        created=r["Creation Date"], modification_reference=r.get("Modification Reference", ""),
        gross_currency=gross, gross_debit_minor=_minor(r["Gross Debit (GC)"], gross),
        gross_credit_minor=_minor(r["Gross Credit (GC)"], gross), net_currency=net,
        net_debit_minor=_minor(r["Net Debit (NC)"], net), net_credit_minor=_minor(r["Net Credit (NC)"], net),
        commission_minor=fees, batch_number=r["Batch Number"])


def _minor(text: str | None, currency: str) -> int:
    """An unsigned amount cell in minor units; an empty cell is zero."""
    text = (text or "").strip()
    if not text:
        return 0
    try:
        return parse_amount(text, currency, max_minor=AMOUNT_MINOR_MAX)
    except AmountNotPositive:
        return 0  # "0.00"
