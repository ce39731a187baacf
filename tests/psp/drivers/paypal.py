"""The PayPal connector as the conformance suite drives it: tokens are PayPal accounts (an email
address or a PayPal id); the simulator reads the magic addresses of paycell.psp.paypal.sim_world.
A pay-in always needs the buyer's approval at PayPal: `approve` is the buyer visiting the link."""
from __future__ import annotations

import aiohttp
from yarl import URL

from tests.psp.drivers.base import Driver


async def approve(http: aiohttp.ClientSession, action_url: str) -> None:
    """Visit the approval page as the buyer; PayPal then sends them back to paycell's return URL
    (not followed here: the redirect itself is the proof the order was approved)."""
    async with http.get(action_url, allow_redirects=False) as response:
        body = await response.text()
        assert response.status in (200, 302), (response.status, body[:200])
        if response.status == 302:
            assert "PayerID" in URL(response.headers["Location"]).query, response.headers["Location"]


DRIVER = Driver(
    connector="paypal",
    sim_prefix="/paypal",
    option="paypal",
    currency="USD",
    payin_ok="buyer@example.com",
    payout_ok="payee@example.com",
    declines={"capture_declined": "capture-declined@example.com",
              "instrument_declined": "instrument-declined@example.com"},
    pending_ok=("paypal", "capture-pending@example.com"),
    settle_after_s=86_400.0,
    late_return=("paypal", "capture-reversed@example.com"),
    return_after_s=7 * 86_400.0,
    return_code="paypal_reversed",
    action=("paypal", "buyer@example.com"),
    approve=approve,
    refunds=True,  # POST /v2/payments/captures/{id}/refund; a paid payout item cannot be recalled
)
