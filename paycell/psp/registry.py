"""Connectors by name, and which provider tokens each accepts for which payment option.

Adding a connector: one package in `psp/` whose module (named here) provides
    create(settings) -> Psp                 a new adapter, configured from settings
    missing(settings) -> str | None         what configuration it still needs (None: ready)
    TOKEN_PATTERNS: dict[str, re.Pattern]   payment option -> what a provider token looks like
and one entry in `CONNECTORS`.
"""
from __future__ import annotations

import importlib
import re
from types import ModuleType

from paycell.config.settings import Settings
from paycell.psp.base import Psp
from paycell.psp.tokens import split_token


class UnknownPsp(LookupError):
    """No connector is registered under this name."""


# name -> the module implementing it.
CONNECTORS: dict[str, str] = {
    "simulator": "paycell.psp.simulated",
    "bank": "paycell.psp.bank",
    "paypal": "paycell.psp.paypal.connector",
    "adyen": "paycell.psp.adyen.connector",
    "stripe": "paycell.psp.stripe.connector",
}

# The API's payment_option -> the instrument part of a test-simulator token (`tok_<part>_...`).
OPTION_INSTRUMENT: dict[str, str] = {
    "card": "card",
    "bank_account": "bank",
    "paypal": "paypal",
    "apple_pay": "applepay",
    "google_pay": "googlepay",
}


def module(name: str) -> ModuleType:
    try:
        return importlib.import_module(CONNECTORS[name])
    except KeyError:
        raise UnknownPsp(f"no PSP connector named {name!r}; known: {sorted(CONNECTORS)}") from None


def adapter_for(name: str, settings: Settings) -> Psp:
    """A new adapter for the connector registered as `name`, configured from `settings`."""
    return module(name).create(settings)


def registered(name: str) -> bool:
    """True when a connector is registered as `name` (a connector instruments may attach to)."""
    return name in CONNECTORS


def token_fits(name: str, payment_option: str, token: str) -> bool:
    """Whether `token` is what connector `name` issues for `payment_option`."""
    pattern: re.Pattern | None = module(name).TOKEN_PATTERNS.get(payment_option)
    return pattern is not None and pattern.fullmatch(token) is not None


def instrument_kind(token: str) -> str | None:
    """"card", "bank", "paypal", "applepay" or "googlepay" for a test-simulator token, else None."""
    parts = split_token(token)
    return parts[0] if parts else None
