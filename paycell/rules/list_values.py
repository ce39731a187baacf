"""What a named list may hold, per kind, and each value's one spelling.

The rules compare a payment's facts with a list's values as text, so a value is stored the way
the facts spell it: an IP address as `ipaddress` prints it (`2001:db8::1`, never `2001:DB8:0::1`;
an IPv4-mapped IPv6 address as its IPv4 address), a country as its ISO 3166-1 alpha-2 code in
upper case, a user id as paycell.refs.USER_ID, an instrument as the PSP's token (refs.TOKEN).
"""
from __future__ import annotations

import ipaddress
import re

import iso3166

from paycell.errors import Unprocessable
from paycell.refs import TOKEN, USER_ID

KINDS = ("user", "instrument", "ip", "country")
LIST_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
VALUES_PER_REQUEST_MAX = 500
VALUE_CHARS_MAX = 200  # the column's bound (migration 0014)
NOTE_CHARS_MAX = 500
_COUNTRIES = frozenset(iso3166.countries_by_alpha2)


def normalise(kind: str, value: str) -> str | None:
    """`value` spelt as the list of `kind` stores it; None when it is not one."""
    if not isinstance(value, str) or not 0 < len(value) <= VALUE_CHARS_MAX:
        return None
    match kind:
        case "ip":
            try:
                address = ipaddress.ip_address(value.strip())
            except ValueError:
                return None
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            return str(address)
        case "country":
            code = value.strip().upper()
            return code if len(code) == 2 and code in _COUNTRIES else None
        case "user":
            return value if USER_ID.fullmatch(value) else None
        case "instrument":
            return value if TOKEN.fullmatch(value) else None
    raise ValueError(f"unknown list kind {kind!r}")


_EXPECTED = {
    "ip": "an IPv4 or IPv6 address",
    "country": "an ISO 3166-1 alpha-2 country code such as US or DE",
    "user": "a user id (letters, digits, _ . -; at most 64)",
    "instrument": "a PSP token (letters, digits, _ . @ + -; at most 200)",
}


def normalise_all(kind: str, values: list[str], *, field: str = "values") -> list[str]:
    """Every value normalised, duplicates dropped (first spelling kept), or Unprocessable naming
    the first bad one (`values[3]`) or the count."""
    if not values:
        raise Unprocessable(f"{field} must hold at least one value", code="list_values_invalid", field=field)
    if len(values) > VALUES_PER_REQUEST_MAX:
        raise Unprocessable(f"at most {VALUES_PER_REQUEST_MAX} values per request, got {len(values)}",
                            code="list_values_too_many", field=field)
    normalised: dict[str, None] = {}
    for i, value in enumerate(values):
        one = normalise(kind, value)
        if one is None:
            raise Unprocessable(f"{value[:80]!r} is not {_EXPECTED[kind]} (a {kind} list)",
                                code="list_value_invalid", field=f"{field}[{i}]")
        normalised[one] = None
    return list(normalised)


def normalise_one(kind: str, value: str, *, field: str = "value") -> str:
    one = normalise(kind, value)
    if one is None:
        raise Unprocessable(f"{value[:80]!r} is not {_EXPECTED[kind]} (a {kind} list)",
                            code="list_value_invalid", field=field)
    return one


def check_list_name(name: str, *, field: str = "name") -> str:
    if not LIST_NAME.fullmatch(name):
        raise Unprocessable(f"{name[:80]!r} is not a list name: a lower-case letter, then up to 62 lower-case "
                            "letters, digits or _", code="list_name_invalid", field=field)
    return name
