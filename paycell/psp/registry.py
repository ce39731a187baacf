"""Connectors by name, and which provider tokens each accepts for which payment option.

Adding a connector: one package in `psp/` whose module (named here) provides
    create(settings) -> Psp                 a new adapter, configured from settings
    missing(settings) -> str | None         what configuration it still needs (None: ready)
    TOKEN_PATTERNS: dict[str, re.Pattern]   payment option -> what a provider token looks like
and one entry in `CONNECTORS`.

Besides these, `PAYCELL_PSP_TEST_CONNECTORS` (development and tests only) names more instances of
the `test` connector, each pointed at a simulator of its own: a second connector to route, break
and fail over to without a provider account.
"""
from __future__ import annotations

import importlib
import re
from types import ModuleType

from paycell.config.settings import CONNECTOR_ALIASES, Settings
from paycell.psp.base import Psp
from paycell.psp.tokens import split_token


class UnknownPsp(LookupError):
    """No connector is registered under this name."""


TEST_CONNECTOR = "test"
# name -> the module implementing it.
CONNECTORS: dict[str, str] = {
    TEST_CONNECTOR: "paycell.psp.simulated",
    "stripe": "paycell.psp.stripe.connector",
    "adyen": "paycell.psp.adyen.connector",
    "paypal": "paycell.psp.paypal.connector",
    "bank": "paycell.psp.bank",
}

# The API's payment_option -> the instrument part of a test-simulator token (`tok_<part>_...`).
OPTION_INSTRUMENT: dict[str, str] = {
    "card": "card",
    "bank_account": "bank",
    "paypal": "paypal",
    "apple_pay": "applepay",
    "google_pay": "googlepay",
}
PAYMENT_OPTIONS = tuple(OPTION_INSTRUMENT)


def canonical(name: str) -> str:
    """The connector's name once old names are resolved (`simulator` is the `test` connector)."""
    return CONNECTOR_ALIASES.get(name, name)


def names_of(name: str) -> tuple[str, ...]:
    """Every name rows may carry for connector `name`: itself and its aliases (an instrument
    attached as `simulator` before the rename is the `test` connector's)."""
    return (name, *(old for old, new in CONNECTOR_ALIASES.items() if new == name))


def _test_instance(name: str, settings: Settings | None) -> bool:
    return settings is not None and name in settings.psp_test_connectors


def module(name: str, settings: Settings | None = None) -> ModuleType:
    name = canonical(name)
    if _test_instance(name, settings):
        name = TEST_CONNECTOR
    try:
        return importlib.import_module(CONNECTORS[name])
    except KeyError:
        known = sorted(all_names(settings))
        raise UnknownPsp(f"no PSP connector named {name!r}; known: {known}") from None


def all_names(settings: Settings | None = None) -> list[str]:
    """Every connector name: the registered ones and the settings' extra test instances."""
    return [*CONNECTORS, *(settings.psp_test_connectors if settings is not None else ())]


def adapter_for(name: str, settings: Settings) -> Psp:
    """A new adapter for the connector registered as `name`, configured from `settings`."""
    name = canonical(name)
    if _test_instance(name, settings):
        from paycell.psp import simulated
        return simulated.create_instance(settings, name)
    return module(name, settings).create(settings)


def missing(name: str, settings: Settings) -> str | None:
    """What connector `name` still needs configured (None: it is ready to carry payments)."""
    name = canonical(name)
    if _test_instance(name, settings):
        return None
    return module(name, settings).missing(settings)


def registered(name: str, settings: Settings | None = None) -> bool:
    """True when a connector is registered as `name` (a connector instruments may attach to)."""
    name = canonical(name)
    return name in CONNECTORS or _test_instance(name, settings)


def token_fits(name: str, payment_option: str, token: str, settings: Settings | None = None) -> bool:
    """Whether `token` is what connector `name` issues for `payment_option`."""
    pattern: re.Pattern | None = module(name, settings).TOKEN_PATTERNS.get(payment_option)
    return pattern is not None and pattern.fullmatch(token) is not None


def options_fitting(name: str, token: str, settings: Settings | None = None) -> list[str]:
    """The payment options for which connector `name` issues tokens like `token`."""
    return [option for option, pattern in module(name, settings).TOKEN_PATTERNS.items()
            if pattern.fullmatch(token) is not None]


def instrument_kind(token: str) -> str | None:
    """"card", "bank", "paypal", "applepay" or "googlepay" for a test-simulator token, else None."""
    parts = split_token(token)
    return parts[0] if parts else None
