"""The Adyen connector in the conformance suite: its simulator's stored payment method ids
(paycell/psp/adyen/sim_methods.py) and how a shopper passes 3-D Secure there.

Adyen decides pending payments, redirects and every pay-out by notification (AUTHORISATION,
PAYOUT_THIRDPARTY): `status` replays the first answer, so these scenarios finish only through the
webhook inbox (`POST /psp/webhooks/adyen`)."""
from __future__ import annotations

import aiohttp

from paycell.psp.adyen import sim_methods
from tests.psp.drivers.base import Driver


async def approve(session: aiohttp.ClientSession, action_url: str) -> None:
    """The shopper opens the 3-D Secure page: the simulator authenticates, sends AUTHORISATION and
    redirects to the returnUrl (not followed: paycell's return page is not under test here)."""
    async with session.get(action_url, allow_redirects=False) as page:
        assert page.status == 302, (page.status, await page.text())


DRIVER = Driver(
    connector="adyen",
    sim_prefix="/adyen",
    option="card",
    currency="USD",
    payin_ok="AUTHORISED000001",
    payout_ok="PAYOUTOK00000001",
    declines={
        "refused:2:Refused": "REFUSED000000002",
        "refused:12:Not enough balance": "NOBALANCE0000012",
        "refused:6:Expired Card": "EXPIRED000000006",
        "refused:5:Blocked Card": "BLOCKED000000005",
        "error:4:Acquirer Error": "ERROR00000000004",
        "cancelled:15:Cancelled": "CANCELLED0000015",
    },
    pending_ok=("card", "PENDING000000001"),
    settle_after_s=sim_methods.PENDING_SETTLE_S,
    late_return=("card", "CHARGEBACK000001"),
    return_after_s=sim_methods.CHARGEBACK_AFTER_S,
    return_code="chargeback:Fraudulent transaction",
    action=("card", "THREEDS000000001"),
    approve=approve,
    refunds=True,
    refund_refused="NOREFUND00000001",  # POST /payments/{pspReference}/refunds: `received`, then the REFUND notification
)
