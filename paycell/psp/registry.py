"""PSP adapters by name, and which instrument tokens fit which payment option.

Adding a PSP: one module implementing `Psp` and one entry in `_ADAPTERS`.
"""
from __future__ import annotations

from collections.abc import Callable

from paycell.config.settings import Settings
from paycell.psp.base import Psp
from paycell.psp.simulated import SimulatedPsp
from paycell.psp.tokens import split_token


class UnknownPsp(LookupError):
    """No adapter is registered under this name."""


_ADAPTERS: dict[str, Callable[[Settings], Psp]] = {
    "simulator": lambda s: SimulatedPsp(s.psp_sim_url, s.psp_timeout_s),
}

# The API's payment_option -> the instrument part of the token it must carry.
OPTION_INSTRUMENT: dict[str, str] = {
    "card": "card",
    "bank_account": "bank",
    "paypal": "paypal",
    "apple_pay": "applepay",
    "google_pay": "googlepay",
}


def adapter_for(name: str, settings: Settings) -> Psp:
    """A new adapter for the PSP registered as `name`, configured from `settings`."""
    try:
        factory = _ADAPTERS[name]
    except KeyError:
        raise UnknownPsp(f"no PSP adapter named {name!r}; known: {sorted(_ADAPTERS)}") from None
    return factory(settings)


def registered(name: str) -> bool:
    """True when a PSP adapter is registered as `name` (a connector instruments may attach to)."""
    return name in _ADAPTERS


def instrument_kind(token: str) -> str | None:
    """"card", "bank", "paypal", "applepay" or "googlepay" for a well-formed token, else None."""
    parts = split_token(token)
    return parts[0] if parts else None
