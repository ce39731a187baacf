"""A simulator of Modern Treasury's Payment Orders API over an ACH rail (rail.py), served by
`paycell psp-sim` under `/bank`:

    POST /api/payment_orders               create an ACH payment order (201); header
                                           Idempotency-Key: the same key and body answer the first
                                           response again (status and body, as the provider caches
                                           it), another body 422
    GET  /api/payment_orders/{id}          200, or 404
    PATCH /api/payment_orders/{id}         {"status": "cancelled"}: cancel it before the cut-off
                                           (422 once it has gone to the bank)
    GET  /api/payment_orders               newest first; filters metadata[<key>]=, status=,
                                           direction=, counterparty_id=; per_page (<= 100) and
                                           after_cursor, with X-After-Cursor / X-Per-Page headers
    GET  /api/external_accounts/{id}       a test bank account (rail.TEST_ACCOUNTS)
    POST /api/counterparties               {"name", "accounts": [{"account_details":
                                           [{"account_number"}]}]}: more accounts to pay
    + the kit's /_sim/... routes (faults, clock, webhooks, charges, reports, reset)

Requests authenticate with HTTP Basic (organization id : API key) matching PAYCELL_BANK_ORGANIZATION_ID
and PAYCELL_BANK_API_KEY (when those are unset, any non-empty credentials pass: development).
Errors answer `{"errors": {"code", "message", "parameter"}}`. Webhooks are signed with
PAYCELL_BANK_WEBHOOK_SECRET and delivered to `{PAYCELL_PSP_SIM_WEBHOOK_BASE_URL}/psp/webhooks/bank`.
"""
from __future__ import annotations

import base64
import binascii
import datetime
import hmac
import uuid
from typing import Annotated, Literal

import msgspec
from aiohttp import web

from paycell.config.settings import Settings
from paycell.psp.bank import report, webhooks, wire
from paycell.psp.bank.rail import ACCOUNTS_MAX, PAYMENT_ORDERS_MAX, Rail
from paycell.psp.simkit import SIM_KIT, SimKit

BODY_BYTES_MAX = 16_384
KEY_CHARS_MAX = 255
PER_PAGE_DEFAULT = 25
PER_PAGE_MAX = 100
DEFAULT_INTERNAL_ACCOUNT_ID = "1a000000-0000-4000-8000-000000000001"  # when none is configured
RAIL = web.AppKey("bank_rail", Rail)


class CreateRequest(msgspec.Struct, kw_only=True):
    type: str
    direction: Literal["credit", "debit"]
    amount: Annotated[int, msgspec.Meta(gt=0)]
    originating_account_id: str
    receiving_account_id: str
    currency: str = "USD"
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    description: str | None = None


class UpdateRequest(msgspec.Struct, forbid_unknown_fields=True):
    status: Literal["cancelled"]  # the one update the simulator knows


class AccountDetail(msgspec.Struct):
    account_number: Annotated[str, msgspec.Meta(pattern="^[0-9]{4,17}$")]


class AccountIn(msgspec.Struct):
    account_details: Annotated[list[AccountDetail], msgspec.Meta(min_length=1, max_length=1)]


class CounterpartyIn(msgspec.Struct):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    accounts: Annotated[list[AccountIn], msgspec.Meta(min_length=1, max_length=10)]


class _Cached(msgspec.Struct):
    request: object  # the decoded JSON body of the first request
    status: int
    body: bytes


def _json(payload: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=msgspec.json.encode(payload), status=status, content_type="application/json",
                        headers=headers)


def _error(status: int, code: str, message: str, parameter: str | None = None) -> web.Response:
    return _json({"errors": {"code": code, "message": message, "parameter": parameter}}, status)


class BankSimulator:
    def __init__(self, settings: Settings) -> None:
        self.organization_id = settings.bank_organization_id
        self.api_key = settings.bank_api_key
        self.webhook_key = settings.bank_webhook_secret
        self.kit = SimKit("bank", webhook_url=f"{settings.psp_sim_webhook_base_url}/psp/webhooks/bank")
        self.rail = Rail(self.kit, settings.bank_originating_account_id or DEFAULT_INTERNAL_ACCOUNT_ID, self._emit)
        self.idempotency: dict[str, _Cached] = {}
        self.kit.on_clock.append(self.rail.advance)
        self.kit.on_reset.append(self._reset)
        self.kit.report = lambda day: report.build(self.rail, day)

    def _reset(self) -> None:
        self.rail.reset()
        self.idempotency.clear()

    def _emit(self, event: str, order: wire.PaymentOrder) -> None:
        webhook_id = str(uuid.uuid4())
        body = msgspec.json.encode(wire.WebhookBody(event=event, data=order))
        self.kit.outbox.send(webhook_id, f"payment_order.{event}", webhooks.signed_headers(
            self.webhook_key, webhook_id, body), body)

    @web.middleware
    async def authenticate(self, request: web.Request, handler):
        if "/_sim/" in request.path:
            return await handler(request)
        credentials = _basic_credentials(request.headers.get("Authorization", ""))
        if credentials is None or not all(credentials) or not self._accepts(*credentials):
            return _error(401, "unauthorized", "Organization id and API key do not match")
        return await handler(request)

    def _accepts(self, organization_id: str, api_key: str) -> bool:
        if not self.api_key:
            return True
        return (hmac.compare_digest(organization_id.encode(), self.organization_id.encode())
                and hmac.compare_digest(api_key.encode(), self.api_key.encode()))

    async def create_payment_order(self, request: web.Request) -> web.Response:
        key = request.headers.get("Idempotency-Key")
        if key is not None and not 0 < len(key) <= KEY_CHARS_MAX:
            return _error(400, "parameter_invalid", f"Idempotency-Key must be 1..{KEY_CHARS_MAX} characters")
        raw = await request.read()
        try:
            generic = msgspec.json.decode(raw)
            body = msgspec.json.decode(raw, type=CreateRequest)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return _error(422, "parameter_invalid", str(exc))
        if key is not None and key in self.idempotency:
            cached = self.idempotency[key]
            if cached.request != generic:
                return _error(422, "parameter_invalid", "Idempotency-Key was used with other parameters")
            return web.Response(body=cached.body, status=cached.status, content_type="application/json")
        problem = self._invalid(body)
        if problem is not None:
            return problem
        self.rail.advance()
        order = self.rail.create(direction=body.direction, amount=body.amount, currency=body.currency,
                                 receiving=self.rail.accounts[body.receiving_account_id], metadata=body.metadata,
                                 description=body.description,
                                 order_key=body.metadata.get(wire.ORDER_ID_KEY) or key or "")
        encoded = msgspec.json.encode(order)
        if key is not None:
            self.idempotency[key] = _Cached(request=generic, status=201, body=encoded)
        return web.Response(body=encoded, status=201, content_type="application/json")

    def _invalid(self, body: CreateRequest) -> web.Response | None:
        if body.type != "ach":
            return _error(422, "parameter_invalid", "this simulator moves only ach payment orders", "type")
        if body.currency != "USD":
            return _error(422, "parameter_invalid", "ACH payment orders must be in USD", "currency")
        if body.originating_account_id != self.rail.internal_account_id:
            return _error(422, "parameter_invalid", "originating account not found", "originating_account_id")
        if body.receiving_account_id not in self.rail.accounts:
            return _error(422, "parameter_invalid", "receiving account not found", "receiving_account_id")
        if len(self.rail.orders) >= PAYMENT_ORDERS_MAX:
            return _error(503, "service_unavailable", "the simulator holds too many payment orders; POST /_sim/reset")
        return None

    async def get_payment_order(self, request: web.Request) -> web.Response:
        self.rail.advance()
        order = self.rail.find(request.match_info["id"])
        if order is None:
            return _error(404, "resource_not_found", "payment order not found")
        return _json(order)

    async def update_payment_order(self, request: web.Request) -> web.Response:
        self.rail.advance()
        order_id = request.match_info["id"]
        if self.rail.find(order_id) is None:
            return _error(404, "resource_not_found", "payment order not found")
        try:
            body = msgspec.json.decode(await request.read(), type=UpdateRequest)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return _error(422, "parameter_invalid", str(exc))
        if not self.rail.cancel(order_id):
            return _error(422, "parameter_invalid", "the payment order has gone to the bank", "status")
        return _json(self.rail.find(order_id))

    async def list_payment_orders(self, request: web.Request) -> web.Response:
        self.rail.advance()
        q = request.query
        try:
            per_page = int(q.get("per_page", PER_PAGE_DEFAULT))
        except ValueError:
            return _error(422, "parameter_invalid", "per_page must be an integer", "per_page")
        if not 0 < per_page <= PER_PAGE_MAX:
            return _error(422, "parameter_invalid", f"per_page must be 1..{PER_PAGE_MAX}", "per_page")
        wanted_metadata = {k[len("metadata["):-1]: v for k, v in q.items() if k.startswith("metadata[") and k.endswith("]")}
        orders = [s.order for s in reversed(self.rail.orders.values())]
        orders = [o for o in orders
                  if all(o.metadata.get(k) == v for k, v in wanted_metadata.items())
                  and all(getattr(o, f) == q[f] for f in ("status", "direction", "counterparty_id") if f in q)]
        after = q.get("after_cursor")
        if after:
            ids = [o.id for o in orders]
            orders = orders[ids.index(after) + 1:] if after in ids else []
        page, more = orders[:per_page], len(orders) > per_page
        headers = {"X-Per-Page": str(per_page), "X-After-Cursor": page[-1].id if more else ""}
        return _json(page, headers=headers)

    async def get_external_account(self, request: web.Request) -> web.Response:
        account = self.rail.accounts.get(request.match_info["id"])
        if account is None:
            return _error(404, "resource_not_found", "external account not found")
        return _json(account)

    async def create_counterparty(self, request: web.Request) -> web.Response:
        try:
            body = msgspec.json.decode(await request.read(), type=CounterpartyIn)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return _error(422, "parameter_invalid", str(exc))
        if len(self.rail.accounts) + len(body.accounts) > ACCOUNTS_MAX:
            return _error(503, "service_unavailable", "the simulator holds too many accounts; POST /_sim/reset")
        counterparty = str(uuid.uuid4())
        accounts = [self.rail.add_account(a.account_details[0].account_number, body.name, counterparty)
                    for a in body.accounts]
        now = wire.timestamp(datetime.datetime.fromtimestamp(self.kit.clock.now_s(), datetime.timezone.utc))
        return _json({"id": counterparty, "object": "counterparty", "name": body.name, "accounts": accounts,
                      "created_at": now, "live_mode": False}, 201)


def _basic_credentials(header: str) -> tuple[str, str] | None:
    """(organization id, API key) of an `Authorization: Basic ...` header, or None."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        login, sep, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (login, password) if sep else None


def create_app(settings: Settings) -> web.Application:
    sim = BankSimulator(settings)
    app = web.Application(client_max_size=BODY_BYTES_MAX)
    app[SIM_KIT] = sim.kit
    app[RAIL] = sim.rail
    sim.kit.mount(app)  # faults first: an outage answers before authentication is looked at
    app.middlewares.append(sim.authenticate)
    r = app.router
    r.add_post("/api/payment_orders", sim.create_payment_order)
    r.add_get("/api/payment_orders", sim.list_payment_orders)
    r.add_get("/api/payment_orders/{id}", sim.get_payment_order)
    r.add_patch("/api/payment_orders/{id}", sim.update_payment_order)
    r.add_get("/api/external_accounts/{id}", sim.get_external_account)
    r.add_post("/api/counterparties", sim.create_counterparty)
    return app
