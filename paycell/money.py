"""Money as integer minor units plus an ISO 4217 code; decimal strings on the wire, never floats."""

from __future__ import annotations

import re

import msgspec

# ISO 4217 minor-unit exponents. HUF is 2 per ISO even though cash rounds to whole forints.
CURRENCY_EXPONENT: dict[str, int] = {
    **dict.fromkeys(
        "USD EUR GBP CHF CAD AUD NZD SEK NOK DKK PLN CZK HUF "
        "INR CNY HKD SGD MXN BRL ZAR".split(),
        2,
    ),
    **dict.fromkeys("JPY KRW VND CLP ISK".split(), 0),
    **dict.fromkeys("KWD BHD OMR JOD TND LYD IQD".split(), 3),
}

# [0-9] rather than \d: \d matches Arabic-Indic and other Unicode digits. No sign, no exponent,
# no leading zeros, and both sides of a "." must hold digits.
_AMOUNT_RE = re.compile(r"(0|[1-9][0-9]*)(?:\.([0-9]+))?")


def _show(value: object) -> str:
    # Keep messages bounded when a client sends a megabyte of digits.
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class MoneyError(ValueError):
    """Base for money validation errors; `code` is stable and safe to return to clients."""

    code = "money_invalid"


class UnknownCurrency(MoneyError):
    code = "currency_unknown"


class InvalidAmount(MoneyError):
    code = "amount_invalid"


class TooManyDecimals(MoneyError):
    code = "amount_too_precise"


class AmountNotPositive(MoneyError):
    code = "amount_not_positive"


class AmountTooLarge(MoneyError):
    code = "amount_too_large"


def parse_currency(code: str) -> str:
    """Return `code` if it is a known upper-case ISO 4217 code, else raise UnknownCurrency."""
    if isinstance(code, str) and code in CURRENCY_EXPONENT:
        return code
    if isinstance(code, str) and code.upper() in CURRENCY_EXPONENT:
        # Strict on purpose: one canonical spelling on the wire and in storage.
        raise UnknownCurrency(f"currency {_show(code)} must be upper case, e.g. {code.upper()!r}")
    raise UnknownCurrency(f"unknown currency {_show(code)}: expected an ISO 4217 code like 'USD'")


def parse_amount(text: object, currency: str, *, max_minor: int) -> int:
    """Parse a positive decimal string like "12.30" into minor units of `currency`."""
    exponent = CURRENCY_EXPONENT[parse_currency(currency)]
    if isinstance(max_minor, bool) or not isinstance(max_minor, int) or max_minor < 1:
        raise TypeError(f"max_minor must be a positive int, got {_show(max_minor)}")
    if not isinstance(text, str):
        # Floats cannot represent most decimal amounts exactly; ints are ambiguous (units or minor?).
        raise InvalidAmount(f"amount must be a decimal string, got {type(text).__name__} {_show(text)}")
    match = _AMOUNT_RE.fullmatch(text)
    if match is None:
        raise InvalidAmount(f"amount {_show(text)} is not a plain decimal like '12.30'")
    whole, frac = match.group(1), match.group(2) or ""
    if len(frac) > exponent:
        if exponent == 0:
            raise TooManyDecimals(f"amount {_show(text)}: {currency} has no minor units, use a whole number")
        raise TooManyDecimals(f"amount {_show(text)}: {currency} allows at most {exponent} decimal places")
    # Cheap bound before int(): avoids converting absurdly long digit strings.
    if len(whole) > len(str(max_minor)):
        raise AmountTooLarge(f"amount {_show(text)} {currency} exceeds the maximum {format_amount(max_minor, currency)}")
    minor = int(whole) * 10**exponent + int(frac.ljust(exponent, "0") or "0")
    if minor == 0:
        raise AmountNotPositive(f"amount {_show(text)} must be greater than zero")
    if minor > max_minor:
        raise AmountTooLarge(f"amount {_show(text)} {currency} exceeds the maximum {format_amount(max_minor, currency)}")
    return minor


def format_amount(amount_minor: int, currency: str) -> str:
    """Format minor units as a canonical decimal string, e.g. 1230 USD -> "12.30"; negatives get "-"."""
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise TypeError(f"amount_minor must be an int, got {type(amount_minor).__name__} {_show(amount_minor)}")
    exponent = CURRENCY_EXPONENT[parse_currency(currency)]
    sign = "-" if amount_minor < 0 else ""
    whole, frac = divmod(abs(amount_minor), 10**exponent)
    return f"{sign}{whole}.{frac:0{exponent}d}" if exponent else f"{sign}{whole}"


class Money(msgspec.Struct, frozen=True):
    """An amount in minor units of an ISO 4217 currency."""

    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        # msgspec checks types only when decoding; direct construction must be guarded too.
        if isinstance(self.amount_minor, bool) or not isinstance(self.amount_minor, int):
            raise TypeError(f"amount_minor must be an int, got {_show(self.amount_minor)}")
        parse_currency(self.currency)

    def __str__(self) -> str:
        return f"{format_amount(self.amount_minor, self.currency)} {self.currency}"
