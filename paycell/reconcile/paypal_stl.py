"""PayPal's settlement report (STL): CSV, UTF-8 (a BOM allowed), each line led by its record type.

    RH report header   FH file header    SH section header    CH column header (names the SB cells)
    SB one balance movement              SF section footer, SC section count (per section)
    RF report footer per currency        RC report count      FF file footer: the file's line count

SB cells are read by the names the CH line gives. Amounts are UNSIGNED integers of minor units;
the sign is the CR/DR column beside them. A file is complete only with its footers: RC must count
the SB lines read, each RF's totals must be the sums of that currency's SB lines, and FF the number
of lines; a file cut short (no FF) is truncated. Event codes: T0006 (and T00xx) payments received,
T0001 / T0002 mass pay, T1106 reversal, T1107 refund, T0400 withdrawal to the bank, T01xx fees.
"""
from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import IO

from paycell.errors import SettlementFileRejected
from paycell.reconcile.formats import (COLUMNS, MALFORMED, TRUNCATED, Line, currency, header_index, rows,
                                       unsigned_minor)

WHAT = "PayPal settlement report (STL)"
REQUIRED = ("Transaction ID", "Invoice ID", "Transaction Event Code", "Transaction Initiation Date",
            "Transaction Debit or Credit", "Gross Transaction Amount", "Gross Transaction Currency",
            "Fee Debit or Credit", "Fee Amount")
RECORDS = frozenset({"RH", "FH", "SH", "CH", "SB", "SF", "SC", "RF", "RC", "FF"})


def _category(code: str) -> str:
    if code in ("T0001", "T0002"):
        return "payout"
    if code == "T1106":
        return "return"
    if code == "T1107":
        return "refund"
    if code == "T0400":
        return "transfer_out"
    if code.startswith("T00"):
        return "payin"
    if code.startswith("T01"):
        return "fee"
    return "other"


def _time(text: str, line: int) -> datetime.datetime | None:
    """`YYYY/MM/DD HH:MM:SS +hhmm` as an aware datetime."""
    text = text.strip()
    if not text:
        return None
    try:
        return datetime.datetime.strptime(text, "%Y/%m/%d %H:%M:%S %z")
    except ValueError:
        raise SettlementFileRejected(f"time {text[:40]!r} is not YYYY/MM/DD HH:MM:SS +hhmm", line=line) from None


def parse(f: IO[str]) -> Iterator[Line]:
    index: dict[str, int] | None = None
    sb = 0
    totals: dict[str, list[int]] = {}
    footers: dict[str, list[int]] = {}
    report_count = file_lines = None
    last_line = 0
    for line, cells in rows(f, what=WHAT):
        last_line = line
        record = cells[0].lstrip("\ufeff").strip() if cells else ""
        if record not in RECORDS:
            raise SettlementFileRejected(f"record type {record[:10]!r} is not an STL record", code=MALFORMED,
                                         line=line)
        if file_lines is not None:
            raise SettlementFileRejected("lines after the file footer (FF)", code=MALFORMED, line=line)
        body = cells[1:]
        if record == "CH":
            index = header_index(body, REQUIRED, what=WHAT)
        elif record == "SB":
            if index is None:
                raise SettlementFileRejected("an SB line before its CH column header", code=COLUMNS, line=line)
            sb += 1
            yield _movement(body, index, line, totals)
        elif record == "RF":
            code = currency(body[0] if body else "", line)
            footers[code] = [unsigned_minor(v, line) for v in body[1:5]]
        elif record == "RC":
            report_count = unsigned_minor(body[0] if body else "", line)
        elif record == "FF":
            file_lines = unsigned_minor(body[0] if body else "", line)
    if file_lines is None or report_count is None:
        raise SettlementFileRejected("no report count (RC) and file footer (FF): the file was cut short",
                                     code=TRUNCATED, line=last_line)
    if report_count != sb or file_lines != last_line:
        raise SettlementFileRejected(f"footers count {report_count} movements in {file_lines} lines, the file has "
                                     f"{sb} in {last_line}", code=TRUNCATED, line=last_line)
    for code, sums in totals.items():
        if footers.get(code) != sums:
            raise SettlementFileRejected(f"the report footer's {code} totals differ from its lines", code=MALFORMED,
                                         line=last_line)


def _movement(body: list[str], index: dict[str, int], line: int, totals: dict[str, list[int]]) -> Line:
    def get(name: str) -> str:
        i = index.get(name)
        return body[i] if i is not None and i < len(body) else ""

    if len(body) < len(index):
        raise SettlementFileRejected(f"{len(body)} cells where the CH line names {len(index)}", line=line)
    code = currency(get("Gross Transaction Currency"), line)
    fee_currency = get("Fee Currency").strip()
    if fee_currency and currency(fee_currency, line) != code:
        raise SettlementFileRejected(f"a fee in {fee_currency} on a movement in {code}", code="settlement_file_currency",
                                     line=line)
    sign, fee_sign = get("Transaction Debit or Credit").strip(), get("Fee Debit or Credit").strip()
    if sign not in ("CR", "DR") or (fee_sign and fee_sign not in ("CR", "DR")):
        raise SettlementFileRejected("Debit or Credit must be CR or DR", line=line)
    gross, fee = unsigned_minor(get("Gross Transaction Amount"), line), unsigned_minor(get("Fee Amount"), line)
    t = totals.setdefault(code, [0, 0, 0, 0])
    t[0 if sign == "CR" else 1] += gross
    t[2 if fee_sign == "CR" else 3] += fee
    reference = (get("PayPal Reference ID") or get("Transaction ID")).strip()
    return Line(line, _category(get("Transaction Event Code").strip()), reference or None,
                (get("Invoice ID") or get("Custom Field")).strip() or None, gross, code,
                fee if fee_sign != "CR" else -fee, _time(get("Transaction Initiation Date"), line))
