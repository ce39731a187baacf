"""The provider simulators `paycell psp-sim` serves beside the test simulator, by path prefix.

Adding a provider: its package's `simulator.create_app(settings)` and one entry here. Each app
serves its provider's wire format and the `/_sim/...` control routes (paycell.psp.simkit).
"""
from __future__ import annotations

import importlib
import secrets
import uuid
from collections.abc import Callable

from aiohttp import web

from paycell.config.settings import Settings

# prefix -> module whose `create_app(settings) -> web.Application` builds the simulator.
PROVIDER_SIMS: dict[str, str] = {
    "/bank": "paycell.psp.bank.simulator",
    "/paypal": "paycell.psp.paypal.simulator",
    "/adyen": "paycell.psp.adyen.simulator",
    "/stripe": "paycell.psp.stripe.simulator",
}


def factories() -> dict[str, Callable[[Settings], web.Application]]:
    return {prefix: importlib.import_module(module).create_app for prefix, module in PROVIDER_SIMS.items()}


def mount(app: web.Application, settings: Settings) -> None:
    """Serve every provider simulator under its prefix (`/stripe`, `/adyen`, ...) on `app`."""
    for prefix, create_app in factories().items():
        app.add_subapp(prefix, create_app(settings))


# Development and tests: every option to the test connector first, then to each provider that
# carries it; an order goes to the first connector its instrument is attached on.
DEV_ROUTES = ("card=test,stripe,adyen;apple_pay=test,stripe,adyen;google_pay=test,stripe,adyen;"
              "bank_account=test,bank,stripe;paypal=test,paypal")


def connector_env(sim_url: str) -> dict[str, str]:
    """Environment pointing every connector at the simulators under `sim_url`, with credentials and
    webhook secrets made fresh for this run: what `paycell dev` and the test suite give the web,
    the workers and the simulators (which sign and check with the same secrets)."""
    return {
        "PAYCELL_STRIPE_API_BASE_URL": f"{sim_url}/stripe",
        "PAYCELL_STRIPE_API_KEY": f"sk_test_{secrets.token_hex(12)}",
        "PAYCELL_STRIPE_WEBHOOK_SECRET": f"whsec_{secrets.token_hex(16)}",
        "PAYCELL_ADYEN_CHECKOUT_BASE_URL": f"{sim_url}/adyen/checkout/v71",
        "PAYCELL_ADYEN_PAYOUT_BASE_URL": f"{sim_url}/adyen/pal/servlet/Payout/v68",
        "PAYCELL_ADYEN_API_KEY": f"AQE_sim_{secrets.token_hex(16)}",
        "PAYCELL_ADYEN_MERCHANT_ACCOUNT": "PaycellSimECOM",
        "PAYCELL_ADYEN_HMAC_KEY": secrets.token_hex(32).upper(),
        "PAYCELL_PAYPAL_API_BASE_URL": f"{sim_url}/paypal",
        "PAYCELL_PAYPAL_CLIENT_ID": f"sim-client-{secrets.token_hex(8)}",
        "PAYCELL_PAYPAL_CLIENT_SECRET": secrets.token_hex(16),
        "PAYCELL_PAYPAL_WEBHOOK_ID": f"WH-SIM-{secrets.token_hex(8).upper()}",
        "PAYCELL_PAYPAL_CERT_HOSTS": "127.0.0.1",
        "PAYCELL_BANK_API_BASE_URL": f"{sim_url}/bank",
        "PAYCELL_BANK_ORGANIZATION_ID": str(uuid.uuid4()),
        "PAYCELL_BANK_API_KEY": f"bank_sim_{secrets.token_hex(12)}",
        "PAYCELL_BANK_ORIGINATING_ACCOUNT_ID": str(uuid.uuid4()),
        "PAYCELL_BANK_WEBHOOK_SECRET": secrets.token_hex(32),
        "PAYCELL_PSP_SIM_WEBHOOK_SECRET": f"whsec_sim_{secrets.token_hex(16)}",
    }
