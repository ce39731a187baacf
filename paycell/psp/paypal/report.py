"""PayPal's settlement report (STL), as the simulator serves it for one UTC day at
`/_sim/reports?date=YYYY-MM-DD` (the reconciliation work reads it).

CSV, UTF-8 with a BOM, every field quoted; every line starts with its record type:
    RH  report header: generation date, reporting window ("A"), account id, version
    FH  file header: file sequence number
    SH  section header: period start, period end, account id
    CH  column header: the names of the SB columns below
    SB  section body: one balance movement. Amounts are UNSIGNED minor units ("1230" is 12.30 USD,
        "1230" is 1230 JPY); the direction is the CR/DR column beside them
    SF  section footer, one per currency: currency, total gross CR, total gross DR, total fee CR,
        total fee DR
    SC  section record count (SB lines in the section)
    RF  report footer, one per currency: as SF, for the whole report
    RC  report record count (SB lines in the report)
    FF  file footer: lines in the file
Transaction event codes used: T0006 checkout payment (CR), T0001 payout (mass pay, DR),
T1106 payment reversal initiated by PayPal (DR).
"""
from __future__ import annotations

import collections
import csv
import datetime
import io
from collections.abc import Iterable

from paycell.psp.paypal.sim_world import Movement

VERSION = "010"
COLUMNS = ("Transaction ID", "Invoice ID", "PayPal Reference ID", "PayPal Reference ID Type",
           "Transaction Event Code", "Transaction Initiation Date", "Transaction Completion Date",
           "Transaction Debit or Credit", "Gross Transaction Amount", "Gross Transaction Currency",
           "Fee Debit or Credit", "Fee Amount", "Fee Currency", "Custom Field", "Consumer ID")


def _stamp(at_s: float) -> str:
    return datetime.datetime.fromtimestamp(at_s, datetime.timezone.utc).strftime("%Y/%m/%d %H:%M:%S +0000")


def stl(day: datetime.date, movements: Iterable[Movement], account_id: str, generated_at_s: float) -> bytes:
    start = datetime.datetime.combine(day, datetime.time(), datetime.timezone.utc)
    start_s, end_s = start.timestamp(), (start + datetime.timedelta(days=1)).timestamp()
    rows = sorted((m for m in movements if start_s <= m.at_s < end_s), key=lambda m: m.at_s)
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    lines = [
        ["RH", _stamp(generated_at_s), "A", account_id, VERSION],
        ["FH", "01"],
        ["SH", _stamp(start_s), _stamp(end_s - 1), account_id],
        ["CH", *COLUMNS],
    ]
    totals: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0, 0])
    for m in rows:
        lines.append(["SB", m.transaction_id, m.invoice_id, m.reference_id, "ODR" if m.event_code == "T0006" else "TXN",
                      m.event_code, _stamp(m.at_s), _stamp(m.at_s), "CR" if m.credit else "DR", str(m.gross_minor),
                      m.currency, "CR" if m.fee_credit else "DR", str(m.fee_minor), m.currency, m.invoice_id, ""])
        t = totals[m.currency]
        t[0 if m.credit else 1] += m.gross_minor
        t[2 if m.fee_credit else 3] += m.fee_minor
    footers = [[c, *(str(v) for v in totals[c])] for c in sorted(totals)]
    lines += [["SF", *f] for f in footers] + [["SC", str(len(rows))]]
    lines += [["RF", *f] for f in footers] + [["RC", str(len(rows))]]
    lines.append(["FF", str(len(lines) + 1)])
    writer.writerows(lines)
    return ("\ufeff" + out.getvalue()).encode()
