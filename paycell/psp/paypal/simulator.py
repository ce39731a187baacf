"""A simulator of PayPal's REST API, for development and tests: served by `paycell psp-sim` under
`/paypal` (paycell.psp.sims), its public address is `settings.paypal_api_base_url` (what the
connector calls; the approval and certificate links point there).

Routes (PayPal's wire format; every API route wants a Bearer token from the token endpoint):
    POST /v1/oauth2/token                    client credentials (Basic auth with the client id and
                                             secret from settings), grant_type=client_credentials
    POST /v2/checkout/orders                 create (intent CAPTURE, one purchase unit); 201, or the
                                             order's latest state (200) for a PayPal-Request-Id seen before
    GET  /v2/checkout/orders/{id}
    POST /v2/checkout/orders/{id}/capture    422 ORDER_NOT_APPROVED before approval,
                                             ORDER_ALREADY_CAPTURED after a capture under another
                                             PayPal-Request-Id; the same id answers the captured order
    POST /v2/payments/captures/{id}/refund   refund (part of) a COMPLETED capture: 201 the refund; the same
                                             PayPal-Request-Id answers the same refund; 422
                                             REFUND_AMOUNT_EXCEEDED, CAPTURE_FULLY_REFUNDED,
                                             REFUND_CURRENCY_MISMATCH
    POST /v1/payments/payouts                one item per batch; a sender_batch_id paid before answers
                                             400 USER_BUSINESS_ERROR linking to its batch
    GET  /v1/payments/payouts/{batch id}     GET /v1/payments/payouts-item/{item id}
    GET  /checkoutnow?token={order id}       the buyer's approval page: approves the order (buyer=
                                             an address picks the buyer; cancel=1 cancels), sends
                                             CHECKOUT.ORDER.APPROVED and redirects to the return URL
    GET  /v1/notifications/certs/{id}        the webhook signing certificate (PEM)
    GET/DELETE /_sim/tokens                  tokens issued; DELETE revokes every token (the next
                                             call answers 401, as after PayPal rotates them)
plus the simulator kit's /_sim routes (faults, clock, webhooks, charges, reports, reset).

Outcomes: the magic buyer and payee addresses of sim_world.py, and the sandbox's negative testing
header `PayPal-Mock-Response: {"mock_application_codes": "CODE"}` for the codes in `MOCKS`.
Webhooks are signed as PayPal signs them (sim_signing.py) with settings.paypal_webhook_id and
delivered by the kit's outbox to `{psp_sim_webhook_base_url}/psp/webhooks/paypal`.
"""
from __future__ import annotations

import hmac
import secrets

import aiohttp
import msgspec
from aiohttp import web
from yarl import URL

from paycell import money
from paycell.config.settings import Settings
from paycell.psp.paypal import report, wire
from paycell.psp.paypal.connector import EMAIL, PAYPAL_ID
from paycell.psp.paypal.sim_world import World, magic
from paycell.psp.simkit import SIM_KIT, SimKit

BODY_BYTES_MAX = 64 * 1024
AMOUNT_MINOR_MAX = 10**12
WORLD = web.AppKey("paypal_world", World)

# code -> (HTTP status, error name, the calls it applies to)
MOCKS: dict[str, tuple[int, str, frozenset[str]]] = {
    "INSTRUMENT_DECLINED": (422, "UNPROCESSABLE_ENTITY", frozenset({"capture"})),
    "TRANSACTION_REFUSED": (422, "UNPROCESSABLE_ENTITY", frozenset({"capture"})),
    "DUPLICATE_INVOICE_ID": (422, "UNPROCESSABLE_ENTITY", frozenset({"create"})),
    "INSUFFICIENT_FUNDS": (422, "INSUFFICIENT_FUNDS", frozenset({"payout"})),
    "INTERNAL_SERVER_ERROR": (500, "INTERNAL_SERVER_ERROR", frozenset({"create", "capture", "payout", "get"})),
    "PERMISSION_DENIED": (403, "NOT_AUTHORIZED", frozenset({"create", "capture", "payout", "get"})),
    "RATE_LIMIT_REACHED": (429, "RATE_LIMIT_REACHED", frozenset({"create", "capture", "payout", "get"})),
}


def _json(payload: object, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(payload), status=status, content_type="application/json")


def _error(status: int, name: str, message: str, issue: str | None = None, *, field: str | None = None,
           links: list[wire.Link] | None = None) -> web.Response:
    detail = {"issue": issue, "description": message}
    if field:
        detail["field"] = field
    if links:
        detail["links"] = links
    body = {"name": name, "message": message, "debug_id": secrets.token_hex(7),
            "details": [detail] if issue else [],
            "links": [{"href": f"https://developer.paypal.com/docs/api/orders/v2/#error-{issue or name}",
                       "rel": "information_link", "method": "GET"}]}
    return _json(body, status)


def _unauthorised(request: web.Request) -> web.Response | None:
    world = request.app[WORLD]
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme == "Bearer" and world.token_valid(token):
        return None
    return _json({"error": "invalid_token", "error_description": "Token signature verification failed"}, 401)


def _mock(request: web.Request, call: str) -> web.Response | None:
    raw = request.headers.get("PayPal-Mock-Response")
    if not raw:
        return None
    try:
        code = msgspec.json.decode(raw, type=dict[str, str]).get("mock_application_codes", "")
    except msgspec.DecodeError:
        return _error(400, "INVALID_REQUEST", "PayPal-Mock-Response is not JSON", "MALFORMED_REQUEST_JSON")
    mock = MOCKS.get(code)
    if mock is None or call not in mock[2]:
        return None
    status, name, _ = mock
    return _error(status, name, f"mock response {code}", code)


async def _decode(request: web.Request, type_) -> tuple[bytes, object] | web.Response:
    raw = await request.read()
    try:
        return raw, msgspec.json.decode(raw, type=type_)
    except msgspec.DecodeError as exc:
        return _error(400, "INVALID_REQUEST", f"Request is not well-formed: {exc}", "MALFORMED_REQUEST_JSON")


def _refused(request: web.Request, call: str) -> web.Response | None:
    """The answer to a call without a valid token, or to a PayPal-Mock-Response for `call`."""
    return _unauthorised(request) or _mock(request, call)


def _not_found() -> web.Response:
    return _error(404, "RESOURCE_NOT_FOUND", "The specified resource does not exist.", "INVALID_RESOURCE_ID")


# --- OAuth2 -------------------------------------------------------------------------------------

async def token(request: web.Request) -> web.Response:
    world = request.app[WORLD]
    sent = request.headers.get("Authorization", "").encode()
    expected = aiohttp.encode_basic_auth(world.client_id, world.client_secret).encode()
    if not hmac.compare_digest(sent, expected):
        return _json({"error": "invalid_client", "error_description": "Client Authentication failed"}, 401)
    form = await request.post()
    if form.get("grant_type") != "client_credentials":
        return _json({"error": "unsupported_grant_type", "error_description": "Grant Type is NULL"}, 400)
    access_token, expires_in = world.issue_token()
    return _json({"scope": "https://uri.paypal.com/services/payments/payment", "access_token": access_token,
                  "token_type": "Bearer", "app_id": "APP-SIM", "expires_in": expires_in,
                  "nonce": secrets.token_hex(16)})


# --- Orders v2 ----------------------------------------------------------------------------------

def _amount_minor(value: str, currency: str) -> int | web.Response:
    try:
        return money.parse_amount(value, currency, max_minor=AMOUNT_MINOR_MAX)
    except money.UnknownCurrency:
        return _error(422, "UNPROCESSABLE_ENTITY", f"currency {currency[:8]} is not supported", "CURRENCY_NOT_SUPPORTED")
    except money.MoneyError as exc:
        return _error(422, "UNPROCESSABLE_ENTITY", str(exc), "DECIMAL_PRECISION", field="amount.value")


def _minimal(order: wire.Order) -> wire.Order:
    return wire.Order(id=order.id, status=order.status, payment_source=order.payment_source, links=order.links)


async def create_order(request: web.Request) -> web.Response:
    world = request.app[WORLD]
    if (refused := _refused(request, "create")) is not None:
        return refused
    decoded = await _decode(request, wire.OrderRequest)
    if isinstance(decoded, web.Response):
        return decoded
    raw, body = decoded
    if body.intent != "CAPTURE":
        return _error(422, "UNPROCESSABLE_ENTITY", "the simulator carries intent CAPTURE only", "UNSUPPORTED_INTENT")
    if len(body.purchase_units) != 1:
        return _error(422, "UNPROCESSABLE_ENTITY", "one purchase unit per order", "MULTIPLE_PURCHASE_UNITS")
    amount = body.purchase_units[0].amount
    amount_minor = _amount_minor(amount.value, amount.currency_code)
    if isinstance(amount_minor, web.Response):
        return amount_minor
    representation = "return=representation" in request.headers.get("Prefer", "")
    request_id = request.headers.get("PayPal-Request-Id")
    async with world.locks[f"create:{request_id or ''}"]:
        known = world.request_ids.get(("create", request_id)) if request_id else None
        if known is not None:
            if known[0] != raw:
                return _error(422, "UNPROCESSABLE_ENTITY", "PayPal-Request-Id used for another request",
                              "PAYPAL_REQUEST_ID_PREVIOUSLY_USED")
            view = world.order_view(world.orders[known[1]])  # the latest state, as PayPal answers
            return _json(view if representation else _minimal(view), 200)
        if world.full():
            return _error(503, "SERVICE_UNAVAILABLE", "the simulator holds too many orders; POST /_sim/reset")
        order = world.create_order(body, amount_minor)
        if request_id:
            world.request_ids[("create", request_id)] = (raw, order.id)
    view = world.order_view(order)
    return _json(view if representation else _minimal(view), 201)


async def get_order(request: web.Request) -> web.Response:
    world = request.app[WORLD]
    if (refused := _refused(request, "get")) is not None:
        return refused
    order = world.orders.get(request.match_info["id"])
    if order is None:
        return _not_found()
    return _json(world.order_view(order))


async def capture_order(request: web.Request) -> web.Response:
    world = request.app[WORLD]
    if (refused := _refused(request, "capture")) is not None:
        return refused
    order_id = request.match_info["id"]
    request_id = request.headers.get("PayPal-Request-Id")
    async with world.locks[f"order:{order_id}"]:
        order = world.orders.get(order_id)
        if order is None:
            return _not_found()
        known = world.request_ids.get(("capture", request_id)) if request_id else None
        if known is not None:
            if known[1] != order_id:
                return _error(422, "UNPROCESSABLE_ENTITY", "PayPal-Request-Id used for another request",
                              "PAYPAL_REQUEST_ID_PREVIOUSLY_USED")
            return _json(world.order_view(order), 200)
        if order.status == "COMPLETED":
            return _error(422, "UNPROCESSABLE_ENTITY", "Order already captured.", "ORDER_ALREADY_CAPTURED")
        if order.status != "APPROVED":
            return _error(422, "UNPROCESSABLE_ENTITY", "Payer has not yet approved the Order for payment.",
                          "ORDER_NOT_APPROVED")
        if magic(order.buyer) == "instrument-declined":
            return _error(422, "UNPROCESSABLE_ENTITY", "The instrument presented was either declined by the "
                          "processor or bank, or it can't be used for this payment.", "INSTRUMENT_DECLINED")
        world.capture(order)
        if request_id:
            world.request_ids[("capture", request_id)] = (b"", order_id)
    return _json(world.order_view(order), 201)


async def refund_capture(request: web.Request) -> web.Response:
    world = request.app[WORLD]
    if (refused := _refused(request, "refund")) is not None:
        return refused
    decoded = await _decode(request, wire.RefundRequest)
    if isinstance(decoded, web.Response):
        return decoded
    raw, body = decoded
    capture_id = request.match_info["id"]
    request_id = request.headers.get("PayPal-Request-Id")
    order = world.orders.get(world.captures.get(capture_id, ""))
    if order is None or order.capture is None or order.capture.amount is None:
        return _not_found()
    async with world.locks[f"order:{order.id}"]:
        known = world.request_ids.get(("refund", request_id)) if request_id else None
        if known is not None:
            if known[0] != raw:
                return _error(422, "UNPROCESSABLE_ENTITY", "PayPal-Request-Id used for another request",
                              "PAYPAL_REQUEST_ID_PREVIOUSLY_USED")
            return _json(next(r for r in order.refunds if r.id == known[1]), 200)
        currency = order.capture.amount.currency_code
        charged = world.kit.charges[order.id].amount_minor
        if order.capture.status == "REFUNDED" or order.refunded_minor >= charged:
            return _error(422, "UNPROCESSABLE_ENTITY", "The capture has already been fully refunded.",
                          "CAPTURE_FULLY_REFUNDED")
        if order.capture.status not in ("COMPLETED", "PARTIALLY_REFUNDED"):
            return _error(422, "UNPROCESSABLE_ENTITY", f"A {order.capture.status} capture cannot be refunded.",
                          "CAPTURE_STATUS_NOT_VALID")
        left = charged - order.refunded_minor
        amount_minor = left
        if body.amount is not None:
            if body.amount.currency_code != currency:
                return _error(422, "UNPROCESSABLE_ENTITY", "The refund's currency is not the capture's.",
                              "REFUND_CURRENCY_MISMATCH", field="amount.currency_code")
            amount_minor = _amount_minor(body.amount.value, currency)
            if isinstance(amount_minor, web.Response):
                return amount_minor
        if amount_minor > left:
            return _error(422, "UNPROCESSABLE_ENTITY", "The refund amount must be less than or equal to the "
                          "capture amount that has not yet been refunded.", "REFUND_AMOUNT_EXCEEDED")
        refund = world.refund(order, amount_minor, body)
        if request_id:
            world.request_ids[("refund", request_id)] = (raw, refund.id)
    return _json(refund, 201)


async def checkoutnow(request: web.Request) -> web.Response:
    """The buyer's approval page: no API token (it is the buyer's browser)."""
    world = request.app[WORLD]
    order = world.orders.get(request.query.get("token", ""))
    if order is None:
        raise web.HTTPNotFound(text="no such checkout")
    context = order.experience()
    if request.query.get("cancel"):
        if context is not None and context.cancel_url:
            raise web.HTTPFound(str(URL(context.cancel_url).update_query(token=order.id)))
        return web.Response(text=f"checkout {order.id} cancelled")
    if order.status in ("CREATED", "PAYER_ACTION_REQUIRED"):
        world.approve(order, request.query.get("buyer"))
    if context is not None and context.return_url:
        raise web.HTTPFound(str(URL(context.return_url).update_query(token=order.id, PayerID=order.payer_id or "")))
    return web.Response(text=f"checkout {order.id} {order.status.lower()}")


# --- Payouts v1 ---------------------------------------------------------------------------------

async def create_payout(request: web.Request) -> web.Response:
    world = request.app[WORLD]
    if (refused := _refused(request, "payout")) is not None:
        return refused
    decoded = await _decode(request, wire.PayoutRequest)
    if isinstance(decoded, web.Response):
        return decoded
    raw, body = decoded
    if len(body.items) != 1:
        return _error(400, "VALIDATION_ERROR", "the simulator pays one item per batch", "ITEMS_COUNT", field="items")
    item = body.items[0]
    recipient_type = item.recipient_type or body.sender_batch_header.recipient_type
    pattern = {"EMAIL": EMAIL, "PAYPAL_ID": PAYPAL_ID}.get(recipient_type or "")
    if pattern is None or not pattern.fullmatch(item.receiver):
        return _error(400, "VALIDATION_ERROR", "Invalid request - see details",
                      "Receiver is invalid or does not match with type", field="items[0].receiver")
    amount_minor = _amount_minor(item.amount.value, item.amount.currency)
    if isinstance(amount_minor, web.Response):
        return amount_minor
    sender_batch_id = body.sender_batch_header.sender_batch_id or ""
    request_id = request.headers.get("PayPal-Request-Id")
    async with world.locks[f"payout:{sender_batch_id}"]:
        known = world.request_ids.get(("payout", request_id)) if request_id else None
        if known is not None:
            if known[0] != raw:
                return _error(422, "UNPROCESSABLE_ENTITY", "PayPal-Request-Id used for another request",
                              "PAYPAL_REQUEST_ID_PREVIOUSLY_USED")
            return _json(world.batch_view(world.batches[known[1]], with_items=False), 201)
        existing = world.batches_by_sender_id.get(sender_batch_id)
        if existing is not None:
            link = wire.Link(href=f"{world.base_url}/v1/payments/payouts/{existing}", rel="self")
            return _error(400, "USER_BUSINESS_ERROR", "User business error.",
                          "Batch with given sender_batch_id already exists", field="SENDER_BATCH_ID", links=[link])
        if world.full():
            return _error(503, "SERVICE_UNAVAILABLE", "the simulator holds too many batches; POST /_sim/reset")
        batch = world.create_batch(body, amount_minor)
        if request_id:
            world.request_ids[("payout", request_id)] = (raw, batch.id)
    return _json(world.batch_view(batch, with_items=False), 201)


async def get_batch(request: web.Request) -> web.Response:
    world = request.app[WORLD]
    if (refused := _refused(request, "get")) is not None:
        return refused
    batch = world.batches.get(request.match_info["id"])
    if batch is None:
        return _not_found()
    return _json(world.batch_view(batch))


async def get_item(request: web.Request) -> web.Response:
    world = request.app[WORLD]
    if (refused := _refused(request, "get")) is not None:
        return refused
    item_id = request.match_info["id"]
    batch = next((b for b in world.batches.values() if b.item.payout_item_id == item_id), None)
    if batch is None:
        return _not_found()
    return _json(world.item_view(batch))


# --- certificates and simulator controls --------------------------------------------------------

async def certificate(request: web.Request) -> web.Response:
    world = request.app[WORLD]
    if request.match_info["cert_id"] != world.signer.cert_id:
        raise web.HTTPNotFound(text="no such certificate")
    return web.Response(body=world.signer.pem, content_type="application/x-pem-file")


async def get_tokens(request: web.Request) -> web.Response:
    world = request.app[WORLD]
    return _json({"issued": world.tokens_issued, "live": len(world.tokens)})


async def revoke_tokens(request: web.Request) -> web.Response:
    world = request.app[WORLD]
    world.tokens.clear()
    return _json({"revoked": True})


def create_app(settings: Settings) -> web.Application:
    kit = SimKit("paypal", webhook_url=f"{settings.psp_sim_webhook_base_url.rstrip('/')}/psp/webhooks/paypal")
    world = World(kit, base_url=settings.paypal_api_base_url, webhook_id=settings.paypal_webhook_id,
                  client_id=settings.paypal_client_id, client_secret=settings.paypal_client_secret)
    kit.report = lambda day: ("text/csv", report.stl(day, world.movements, world.account_id, kit.clock.now_s()))
    kit.on_reset.append(world.reset)
    kit.on_clock.append(world.on_clock)
    app = web.Application(client_max_size=BODY_BYTES_MAX)
    app[SIM_KIT] = kit
    app[WORLD] = world
    kit.mount(app)
    r = app.router
    r.add_post("/v1/oauth2/token", token)
    r.add_post("/v2/checkout/orders", create_order)
    r.add_get("/v2/checkout/orders/{id}", get_order)
    r.add_post("/v2/checkout/orders/{id}/capture", capture_order)
    r.add_post("/v2/payments/captures/{id}/refund", refund_capture)
    r.add_post("/v1/payments/payouts", create_payout)
    r.add_get("/v1/payments/payouts/{id}", get_batch)
    r.add_get("/v1/payments/payouts-item/{id}", get_item)
    r.add_get("/checkoutnow", checkoutnow)
    r.add_get("/v1/notifications/certs/{cert_id}", certificate)
    r.add_get("/_sim/tokens", get_tokens)
    r.add_delete("/_sim/tokens", revoke_tokens)
    return app
