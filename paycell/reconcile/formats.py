"""What every settlement-report parser shares: the line paycell reconciles, streaming a file
row by row under explicit bounds, and exact amounts.

A parser reads its provider's CSV by column name (providers reorder columns and add optional
ones) with the csv module over an open file, one row at a time: a file is never in memory whole,
so a 1,000,000-line report costs the memory of one row plus what the caller batches. Every
failure is a SettlementFileRejected with a stable code and the line it was found on; the caller
stores nothing of a file that fails anywhere (paycell/reconcile/settlement.py ingests a file in
one transaction).

A `Line` is in paycell's words: `category` payin, payout, return (chargeback, dispute, reversal),
return_reversal, refund, fee, transfer_out (the provider paying our balance out), other;
`amount_minor` and `fee_minor` unsigned integers of minor units of `currency` (upper-case ISO
4217), the direction being the category's.
"""
from __future__ import annotations

import csv
import datetime
import decimal
from collections.abc import Iterator
from typing import IO, NamedTuple

from paycell.errors import SettlementFileRejected
from paycell.money import CURRENCY_EXPONENT

FILE_BYTES_MAX = 512 * 1024 * 1024  # a 1,000,000-line Stripe report is about 170 MB
LINES_MAX = 5_000_000
FIELD_CHARS_MAX = 4_096  # no cell of any report is longer; a runaway quote is caught here
AMOUNT_MINOR_MAX = 10**15
CATEGORIES = ("payin", "payout", "return", "return_reversal", "refund", "fee", "transfer_out", "other")

MALFORMED = "settlement_file_malformed"
COLUMNS = "settlement_file_columns"
CURRENCY = "settlement_file_currency"
TRUNCATED = "settlement_file_truncated"
TOO_LARGE = "settlement_file_too_large"

csv.field_size_limit(FIELD_CHARS_MAX)


class Line(NamedTuple):
    line_no: int
    category: str
    psp_reference: str | None
    order_ref: str | None
    amount_minor: int
    currency: str
    fee_minor: int
    booked_at: datetime.datetime | None


def rows(f: IO[str], *, what: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of every row of `f` (opened with newline=""), a csv.Error becoming
    SettlementFileRejected. A last line without its line break is a truncated file."""
    reader = csv.reader(f, strict=True)
    last: list[str] | None = None
    try:
        for cells in reader:
            if reader.line_num > LINES_MAX:
                raise SettlementFileRejected(f"more than {LINES_MAX} lines", code=TOO_LARGE, line=reader.line_num)
            if last is not None:
                yield reader.line_num - 1, last
            last = cells
    except csv.Error as exc:
        raise SettlementFileRejected(f"not a readable {what} CSV: {exc}", code=MALFORMED,
                                     line=reader.line_num) from None
    except UnicodeDecodeError as exc:
        raise SettlementFileRejected(f"not UTF-8 text: {exc.reason}", code=MALFORMED, line=reader.line_num) from None
    if last is not None:
        if not _ends_with_line_break(f):
            raise SettlementFileRejected(f"the {what} ends in the middle of a line", code=TRUNCATED,
                                         line=reader.line_num)
        yield reader.line_num, last


def _ends_with_line_break(f: IO[str]) -> bool:
    buffer = getattr(f, "buffer", None)
    if buffer is None or not buffer.seekable():
        return True
    buffer.seek(-1, 2)
    return buffer.read(1) in (b"\n", b"\r")


def opened(it: Iterator[tuple[int, list[str]]], required: tuple[str, ...], *,
           what: str) -> tuple[dict[str, int], int]:
    """Read a report's header row from `it`: (column name -> index, number of columns)."""
    first = next(it, None)
    if first is None:
        raise SettlementFileRejected(f"empty file: not a {what}", code=COLUMNS, line=1)
    return header_index(first[1], required, what=what), len(first[1])


def header_index(header: list[str], required: tuple[str, ...], *, what: str) -> dict[str, int]:
    """Column name -> index, refusing a header that lacks a required column or names one twice."""
    names = [h.strip() for h in header]
    if len(set(names)) != len(names):
        raise SettlementFileRejected(f"the {what} header names a column twice", code=COLUMNS, line=1)
    missing = [c for c in required if c not in names]
    if missing:
        raise SettlementFileRejected(f"not a {what}: no column {', '.join(repr(c) for c in missing)}",
                                     code=COLUMNS, line=1)
    return {name: i for i, name in enumerate(names)}


def currency(code: str, line: int) -> str:
    """An ISO 4217 code, any case (Stripe writes lower case), as upper case."""
    upper = code.strip().upper()
    if upper not in CURRENCY_EXPONENT:
        raise SettlementFileRejected(f"unknown currency {code[:10]!r}", code=CURRENCY, line=line)
    return upper


def major_to_minor(text: str, code: str, line: int) -> int:
    """A signed decimal amount in MAJOR units ("-12.30") as an exact integer of minor units of
    `code` (by its ISO 4217 exponent, with Decimal, never a float); empty is zero."""
    text = text.strip()
    if not text:
        return 0
    try:
        value = decimal.Decimal(text)
    except decimal.InvalidOperation:
        raise SettlementFileRejected(f"amount {text[:40]!r} is not a decimal number", line=line) from None
    if not value.is_finite():
        raise SettlementFileRejected(f"amount {text[:40]!r} is not a decimal number", line=line)
    scaled = value.scaleb(CURRENCY_EXPONENT[code])
    if scaled != scaled.to_integral_value():
        raise SettlementFileRejected(f"amount {text[:40]!r} has more decimals than {code} allows", line=line)
    minor = int(scaled)
    if abs(minor) > AMOUNT_MINOR_MAX:
        raise SettlementFileRejected(f"amount {text[:40]!r} is out of range", line=line)
    return minor


def unsigned_minor(text: str, line: int) -> int:
    """An unsigned integer of minor units (PayPal STL); empty is zero."""
    text = text.strip()
    if not text:
        return 0
    if not text.isdigit() or len(text) > 16:
        raise SettlementFileRejected(f"amount {text[:40]!r} is not an unsigned integer of minor units", line=line)
    return int(text)


def utc_time(text: str, line: int) -> datetime.datetime | None:
    """`YYYY-MM-DD HH:MM:SS` (or ISO 8601 with an offset) as an aware datetime; empty is None."""
    text = text.strip()
    if not text:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise SettlementFileRejected(f"time {text[:40]!r} is not YYYY-MM-DD HH:MM:SS", line=line) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)


def cell(cells: list[str], index: dict[str, int], name: str) -> str:
    i = index.get(name)
    return cells[i] if i is not None and i < len(cells) else ""


def check_width(cells: list[str], width: int, line: int) -> None:
    if len(cells) != width:
        raise SettlementFileRejected(f"{len(cells)} cells where the header has {width}", line=line)
