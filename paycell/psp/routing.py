"""The routing table: which connectors may carry a payment option (in a currency), in order.

PAYCELL_PSP_ROUTES holds entries separated by `;`, each `OPTION=conn1,conn2` or
`OPTION/CURRENCY=conn1,conn2`:

    card=stripe,adyen;card/EUR=adyen,stripe;paypal=paypal;bank_account/USD=stripe,bank

A payment takes the entry of its option and currency, else the entry of its option, else
`PAYCELL_PSP_DEFAULT` alone. Unknown options, currencies or connector names are refused when
the settings load.
"""
from __future__ import annotations

import functools
import re

from paycell.config.settings import Settings
from paycell.psp import registry

CONNECTOR_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_CURRENCY = re.compile(r"[A-Z]{3}")

Routes = dict[tuple[str, str | None], tuple[str, ...]]


class RouteError(ValueError):
    """The routing table cannot be used as written."""


def parse(text: str, settings: Settings) -> Routes:
    """The table in `text`; RouteError names the first entry that cannot be used."""
    return _parse(text, tuple(sorted(settings.psp_test_connectors)))


@functools.lru_cache(maxsize=8)
def _parse(text: str, extra_connectors: tuple[str, ...]) -> Routes:
    known = set(registry.CONNECTORS) | set(extra_connectors)
    routes: Routes = {}
    for entry in (e.strip() for e in text.split(";") if e.strip()):
        key, sep, value = entry.partition("=")
        option, _, currency = key.strip().partition("/")
        option, currency = option.strip(), currency.strip() or None
        if not sep:
            raise RouteError(f"{entry!r} is not OPTION=connector,... or OPTION/CURRENCY=connector,...")
        if option not in registry.PAYMENT_OPTIONS:
            raise RouteError(f"{entry!r}: {option!r} is not a payment option ({', '.join(registry.PAYMENT_OPTIONS)})")
        if currency is not None and not _CURRENCY.fullmatch(currency):
            raise RouteError(f"{entry!r}: {currency!r} is not an ISO 4217 currency code")
        names = tuple(registry.canonical(n.strip()) for n in value.split(",") if n.strip())
        if not names:
            raise RouteError(f"{entry!r} names no connector")
        unknown = [n for n in names if n not in known]
        if unknown:
            raise RouteError(f"{entry!r}: no connector named {', '.join(map(repr, unknown))}; "
                             f"known: {', '.join(sorted(known))}")
        if len(set(names)) != len(names):
            raise RouteError(f"{entry!r} names a connector twice")
        if (option, currency) in routes:
            raise RouteError(f"{entry!r}: {key.strip()!r} is routed twice")
        routes[(option, currency)] = names
    return routes


def route(settings: Settings, payment_option: str, currency: str) -> tuple[str, ...]:
    """The connectors that may carry a payment of `payment_option` in `currency`, in order."""
    routes = parse(settings.psp_routes, settings) if settings.psp_routes else {}
    return routes.get((payment_option, currency)) or routes.get((payment_option, None)) or (settings.psp_default,)


def gate_names(settings: Settings, payment_option: str, currency: str) -> list[str]:
    """The connector names an instrument carrying this payment may be attached under (the
    route's connectors and their old names): what the accepting statement's gate checks."""
    return [name for connector in route(settings, payment_option, currency) for name in registry.names_of(connector)]


def connectors_named(text: str, settings: Settings) -> set[str]:
    """Every connector the table names."""
    return {name for names in parse(text, settings).values() for name in names}


def connectors_for_option(settings: Settings, payment_option: str) -> list[str]:
    """Every connector any route of `payment_option` names (any currency), in order of first
    mention, then the default: where an instrument for that option is attached by default."""
    routes = parse(settings.psp_routes, settings) if settings.psp_routes else {}
    found: list[str] = []
    for key in sorted(routes, key=lambda k: k[1] is not None):  # the option's own entry first
        if key[0] == payment_option:
            found.extend(n for n in routes[key] if n not in found)
    if settings.psp_default not in found:
        found.append(settings.psp_default)
    return found


def names_to_check(settings: Settings) -> list[str] | None:
    """The connector names (old names included) `screen` must check an order's instrument on:
    every connector of a route with more than one; None when no route has more than one (the gate
    that accepted the payment already checked its only connector)."""
    routes = parse(settings.psp_routes, settings) if settings.psp_routes else {}
    names = {n for connectors in routes.values() if len(connectors) > 1 for n in connectors}
    return sorted(alias for n in names for alias in registry.names_of(n)) or None
