"""The Adyen simulator's settlement details report: one CSV per UTC day (one settlement batch),
the columns of Adyen's "Settlement details report", amounts in major units as Adyen writes them.

Rows: `Settled` (an authorised pay-in, credited less the commission), `Chargeback` (debited),
`PaidOut` (a third-party pay-out, debited), and one `MerchantPayout` per currency closing the
batch (the batch's net, paid to the merchant's bank account).
"""
from __future__ import annotations

import collections
import csv
import datetime
import io

import msgspec

from paycell.money import format_amount

COLUMNS = (
    "Company Account", "Merchant Account", "Psp Reference", "Merchant Reference", "Payment Method",
    "Creation Date", "TimeZone", "Type", "Modification Reference", "Gross Currency", "Gross Debit (GC)",
    "Gross Credit (GC)", "Exchange Rate", "Net Currency", "Net Debit (NC)", "Net Credit (NC)",
    "Commission (NC)", "Markup (NC)", "Scheme Fees (NC)", "Interchange (NC)", "Payment Method Variant",
    "Modification Merchant Reference", "Batch Number",
)
COMPANY_ACCOUNT = "PaycellSimCompany"
COMMISSION_PER_10K = 100  # 1% of the gross, rounded down, in minor units
BATCH_EPOCH = datetime.date(2020, 1, 1)


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    at_s: float
    type: str  # Settled, Chargeback, PaidOut
    psp_reference: str
    merchant_reference: str
    modification_reference: str
    currency: str
    debit_minor: int = 0
    credit_minor: int = 0
    commission_minor: int = 0


def commission_minor(amount_minor: int) -> int:
    return amount_minor * COMMISSION_PER_10K // 10_000


def report(entries: list[Entry], day: datetime.date, merchant_account: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    batch = str((day - BATCH_EPOCH).days)
    net_minor: collections.Counter[str] = collections.Counter()
    for e in entries:
        moment = datetime.datetime.fromtimestamp(e.at_s, datetime.UTC)
        if moment.date() != day:
            continue
        net_credit = e.credit_minor - e.commission_minor if e.credit_minor else 0
        net_minor[e.currency] += net_credit - e.debit_minor
        money = lambda minor: format_amount(minor, e.currency) if minor else ""  # noqa: E731
        writer.writerow((
            COMPANY_ACCOUNT, merchant_account, e.psp_reference, e.merchant_reference, "visa",
            moment.strftime("%Y-%m-%d %H:%M:%S"), "UTC", e.type, e.modification_reference, e.currency,
            money(e.debit_minor), money(e.credit_minor), "", e.currency, money(e.debit_minor), money(net_credit),
            money(e.commission_minor), "", "", "", "visadebit", "", batch,
        ))
    closing = datetime.datetime.combine(day, datetime.time(23, 59, 59)).strftime("%Y-%m-%d %H:%M:%S")
    for currency, net in sorted(net_minor.items()):
        if net <= 0:
            continue  # nothing to pay the merchant: the balance carries over to the next batch
        writer.writerow((
            COMPANY_ACCOUNT, merchant_account, "", "", "", closing, "UTC", "MerchantPayout", f"batch-{batch}",
            "", "", "", "", currency, format_amount(net, currency), "", "", "", "", "", "", "", batch,
        ))
    return out.getvalue().encode()
