"""How the connector reads answers the simulator never gives: a real HTTP server scripted with
Adyen-shaped answers (status, body, headers) for the mapping of errors and unknown result codes."""
from __future__ import annotations

import json

import msgspec
import pytest
from aiohttp import web

from paycell.psp.adyen.connector import AdyenPsp
from paycell.psp.base import PspRejected, PspTransientError

from tests.psp.adyen.test_connector import charge


@pytest.fixture(scope="module")
async def scripted(settings):
    """A server answering every POST with the (status, body, headers) in `script[0]`."""
    script: list[tuple[int, bytes, dict[str, str]]] = []

    async def answer(request: web.Request) -> web.Response:
        status, body, headers = script[0]
        return web.Response(status=status, body=body, headers=headers, content_type="application/json")

    app = web.Application()
    app.router.add_post("/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    psp = AdyenPsp(msgspec.structs.replace(settings, adyen_checkout_base_url=f"http://{host}:{port}/checkout/v71",
                                           adyen_payout_base_url=f"http://{host}:{port}/payout/v68"))
    yield script, psp
    await psp.close()
    await runner.cleanup()


def error(status: int, code: str) -> bytes:
    return json.dumps({"status": status, "errorCode": code, "message": "m", "errorType": "validation"}).encode()


@pytest.mark.parametrize(("status", "body", "headers", "raised"), [
    (500, error(500, "000"), {}, PspTransientError),
    (503, b"<html>down</html>", {}, PspTransientError),
    (429, error(429, "000"), {}, PspTransientError),
    (401, error(401, "000"), {}, PspTransientError),
    (403, error(403, "901"), {}, PspTransientError),
    (409, error(409, "704"), {"transient-error": "true"}, PspTransientError),
    (422, error(422, "704"), {"transient-error": "true"}, PspTransientError),
    (422, error(422, "704"), {}, PspRejected),
    (422, error(422, "000"), {"transient-error": "true"}, PspTransientError),
    (400, error(400, "702"), {}, PspRejected),
    (422, error(422, "800"), {}, PspRejected),
    (404, b"", {}, PspRejected),
    (200, b"{not json", {}, PspTransientError),
    (200, json.dumps({"resultCode": "SomethingNew", "pspReference": "X"}).encode(), {}, PspTransientError),
])
async def test_each_error_answer_is_transient_or_rejected(scripted, status, body, headers, raised):
    script, psp = scripted
    script[:] = [(status, body, headers)]
    with pytest.raises(raised):
        await psp.submit(charge("AUTHORISED000001"))


async def test_a_redirect_without_a_psp_reference_still_requires_action(scripted):
    script, psp = scripted
    answer = {"resultCode": "RedirectShopper", "action": {"type": "redirect", "method": "GET",
                                                          "url": "https://checkoutshopper-test.adyen.com/x"}}
    script[:] = [(200, json.dumps(answer).encode(), {})]
    result = await psp.submit(charge("THREEDS000000001"))
    assert (result.status, result.action_url, result.psp_reference) == (
        "requires_action", "https://checkoutshopper-test.adyen.com/x", "")


async def test_a_payout_refused_at_once_is_declined(scripted):
    script, psp = scripted
    script[:] = [(200, json.dumps({"pspReference": "P1", "resultCode": "Refused",
                                   "refusalReason": "Invalid payout details"}).encode(), {})]
    result = await psp.submit(charge("PAYOUTOK00000001", direction="payout"))
    assert (result.status, result.decline_code) == ("declined", "refused:Invalid payout details")
