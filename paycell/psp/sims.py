"""The provider simulators `paycell psp-sim` serves beside the test simulator, by path prefix.

Adding a provider: its package's `simulator.create_app(settings)` and one entry here. Each app
serves its provider's wire format and the `/_sim/...` control routes (paycell.psp.simkit).
"""
from __future__ import annotations

import importlib
from collections.abc import Callable

from aiohttp import web

from paycell.config.settings import Settings

# prefix -> module whose `create_app(settings) -> web.Application` builds the simulator.
PROVIDER_SIMS: dict[str, str] = {}


def factories() -> dict[str, Callable[[Settings], web.Application]]:
    return {prefix: importlib.import_module(module).create_app for prefix, module in PROVIDER_SIMS.items()}


def mount(app: web.Application, settings: Settings) -> None:
    """Serve every provider simulator under its prefix (`/stripe`, `/adyen`, ...) on `app`."""
    for prefix, create_app in factories().items():
        app.add_subapp(prefix, create_app(settings))
