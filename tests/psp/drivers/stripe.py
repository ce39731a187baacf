"""The Stripe connector for the conformance suite: Stripe's own test PaymentMethod ids, which the
Stripe simulator (paycell/psp/stripe/testmodes.py) reads as Stripe's test mode does."""
from __future__ import annotations

import aiohttp

from tests.psp.drivers.base import Driver

DAY_S = 86_400


async def approve(http: aiohttp.ClientSession, action_url: str) -> None:
    """The customer completes 3-D Secure: visiting the simulator's page authenticates, then it
    redirects to the return URL (not followed: that is paycell's page, not the customer's work)."""
    async with http.get(action_url, allow_redirects=False) as response:
        assert response.status in (200, 302), (response.status, await response.text())


DRIVER = Driver(
    connector="stripe",
    sim_prefix="/stripe",
    option="card",
    currency="USD",
    payin_ok="pm_card_visa",
    payout_ok=None,  # Stripe pays third parties only through Connect, which the connector does not use
    declines={
        "generic_decline": "pm_card_visa_chargeDeclined",
        "insufficient_funds": "pm_card_visa_chargeDeclinedInsufficientFunds",
        "lost_card": "pm_card_visa_chargeDeclinedLostCard",
        "stolen_card": "pm_card_visa_chargeDeclinedStolenCard",
        "fraudulent": "pm_card_chargeDeclinedFraudulent",
        "expired_card": "pm_card_chargeDeclinedExpiredCard",
        "incorrect_cvc": "pm_card_chargeDeclinedIncorrectCvc",
        "processing_error": "pm_card_chargeDeclinedProcessingError",
    },
    # ACH Direct Debit settles after 4 business days: at most 6 calendar days, whatever the weekday.
    pending_ok=("bank_account", "pm_usBankAccount_success"),
    settle_after_s=7 * DAY_S,
    # Succeeds as above, then 2 business days later (at most 4 calendar days) Stripe reports the
    # return as a dispute (debit_not_authorized, NACHA R10).
    late_return=("bank_account", "pm_usBankAccount_lateReturn"),
    return_after_s=5 * DAY_S,
    return_code="R10",
    action=("card", "pm_card_threeDSecure2Required"),
    approve=approve,
    refunds=True,  # POST /v1/refunds
)
