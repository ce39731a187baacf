"""Instrument tokens, `tok_<instrument>_<behaviour>`: what a PSP issues for a card, account or wallet.

The simulator reads the behaviour part like Stripe's test cards; paycell reads only the instrument part.
"""
from __future__ import annotations

import re

INSTRUMENTS = ("card", "bank", "paypal", "applepay", "googlepay")

_TOKEN = re.compile(rf"tok_({'|'.join(INSTRUMENTS)})_([a-z0-9]{{1,64}})")


def split_token(token: str) -> tuple[str, str] | None:
    """(instrument, behaviour) of a well-formed token, or None."""
    match = _TOKEN.fullmatch(token)
    return (match[1], match[2]) if match else None
