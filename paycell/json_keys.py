"""Refusing JSON objects that name a key twice.

RFC 8259 leaves duplicate names undefined and parsers disagree (msgspec and most others keep
the last, some the first): a body that one component reads as `"amount": "1.00"` and another as
`"amount": "1000.00"` is how parser-differential attacks move money. msgspec cannot report
duplicates, so bodies that msgspec accepted are parsed once more by the standard library's C
parser with a hook that sees every (key, value) pair in order: about 4 us for a payment body,
against a database round trip of about 1 ms.
"""
from __future__ import annotations

import json

from paycell.errors import InvalidRequest


def _unique_pairs(pairs: list[tuple[str, object]]) -> dict:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise InvalidRequest(f"the key {key[:40]!r} appears more than once in one object", field=key[:40])
        seen.add(key)
    return dict(pairs)


def refuse_duplicate_keys(raw: bytes) -> None:
    """InvalidRequest naming the first key any object in `raw` repeats. Call it only on a body
    a strict parser has already accepted: this one is more lenient (NaN, Infinity)."""
    json.loads(raw, object_pairs_hook=_unique_pairs)
