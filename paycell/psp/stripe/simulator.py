"""A Stripe-format simulator (dev, demo, tests): the slice of Stripe's API paycell uses, on the
wire as the SDK speaks it, served by `paycell psp-sim` under /stripe.

    POST /v1/payment_intents                create (and with confirm=true, confirm) a PaymentIntent
    GET  /v1/payment_intents/search         ?query=metadata['paycell_order_id']:'<id>' (lags SEARCH_LAG_S)
    GET  /v1/payment_intents/{id}           retrieve
    POST /v1/payment_intents/{id}/cancel    cancel
    POST /v1/refunds                        refund (part of) a succeeded PaymentIntent: payment_intent,
                                            amount (default: what is left), metadata; Idempotency-Key
    GET  /v1/refunds                        ?payment_intent=pi_...: its refunds, newest first
    POST /v1/reporting/report_runs          run `balance_change_from_activity.itemized.3` for one UTC day
                                            (parameters[interval_start], parameters[interval_end]):
                                            succeeded at once, its result a file
    GET  /v1/reporting/report_runs/{id}     retrieve a run
    GET  /v1/files/{id}/contents            the report file's CSV (Stripe serves it from files.stripe.com)
    GET  /hooks/three_d_secure/{id}?token=  the customer's 3-D Secure page: visiting it authenticates
                                            (`&outcome=fail` fails it) and redirects to return_url
    /_sim/...                               the kit's control routes (faults, clock, webhooks,
                                            charges, reports?date=, reset): see paycell.psp.simkit

As Stripe: form-encoded bodies in bracket notation; `Authorization: Bearer <secret key>` checked
against PAYCELL_STRIPE_API_KEY; JSON answers with Stripe's object shapes; errors as
`{"error": {"type", "code", "decline_code", "message", "param"}}` (402 for a declined attempt,
naming the failed `payment_intent`); `Idempotency-Key` honoured as Stripe does (same key and
parameters: the stored answer again, with `Idempotent-Replayed: true`; same key, other
parameters: 400 idempotency_error; a request refused as invalid stores nothing). Outcomes come
from the test PaymentMethod (testmodes.py). Webhooks are signed with PAYCELL_STRIPE_WEBHOOK_SECRET
and sent to `{PAYCELL_PSP_SIM_WEBHOOK_BASE_URL}/psp/webhooks/stripe` (or where `/_sim/webhooks` says).
"""
from __future__ import annotations

import datetime
import hashlib
import hmac
import re
from urllib.parse import urlencode

import msgspec
from aiohttp import web

from paycell.config.settings import Settings
from paycell.psp.simkit import SIM_KIT, SimKit
from paycell.psp.stripe import forms, testmodes
from paycell.psp.stripe.report import itemized_csv
from paycell.psp.stripe.sim_state import Intent, Stored, StripeSimState
from paycell.psp.stripe.wire import ORDER_ID_KEY

STATE = web.AppKey("stripe_sim_state", StripeSimState)
BODY_BYTES_MAX = 16_384
AMOUNT_MAX = 99_999_999  # Stripe's limit: eight digits
METADATA_KEYS_MAX = 50
METADATA_KEY_CHARS_MAX = 40
METADATA_VALUE_CHARS_MAX = 500
IDEMPOTENCY_KEY_CHARS_MAX = 255
# Stripe's minimum charge per currency (in minor units); others: 1.
AMOUNT_MIN = {"usd": 50, "eur": 50, "gbp": 30, "cad": 50, "aud": 50, "chf": 50, "jpy": 50}
CURRENCIES = frozenset(
    "usd eur gbp chf cad aud nzd sek nok dkk pln czk huf inr cny hkd sgd mxn brl zar jpy krw vnd clp".split())
_PARAMS = frozenset({"amount", "currency", "payment_method", "payment_method_types", "confirm", "metadata",
                     "return_url", "description", "capture_method", "expand"})
_SEARCH = re.compile(r"metadata\['((?:[^'\\]|\\.)+)'\]:'((?:[^'\\]|\\.)*)'")


class StripeFailure(Exception):
    """An answer in Stripe's error shape."""

    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None, extra: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = {"type": type_, "message": message, **({"code": code} if code else {}),
                      **({"param": param} if param else {}), **(extra or {})}

    def response(self) -> web.Response:
        return _json({"error": self.error}, self.status)


def _json(payload: object, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(payload), status=status, content_type="application/json")


def _stripe_shape(api_key: str):
    """Stripe's answer conventions on every provider route: the secret key checked, a Request-Id
    on every answer, errors (the kit's injected faults included) in Stripe's error shape."""
    expected = f"Bearer {api_key}".encode()

    @web.middleware
    async def stripe_shape(request: web.Request, handler):
        if "/_sim/" in request.path or "/hooks/" in request.path:
            return await handler(request)
        try:
            if not api_key or not hmac.compare_digest(request.headers.get("Authorization", "").encode(), expected):
                raise StripeFailure(401, "Invalid API Key provided: the simulator's key is PAYCELL_STRIPE_API_KEY")
            response = await handler(request)
            if response.status >= 500 and "Request-Id" not in response.headers:
                # The kit's injected outage / error rate, written as Stripe writes a server error.
                response = StripeFailure(response.status, "Stripe is temporarily unavailable (simulated fault).",
                                         type_="api_error").response()
        except StripeFailure as failure:
            response = failure.response()
        except web.HTTPNotFound:
            response = StripeFailure(404, f"Unrecognized request URL ({request.method}: {request.path}).").response()
        except web.HTTPMethodNotAllowed:
            response = StripeFailure(405, f"Unrecognized request URL ({request.method}: {request.path}).").response()
        response.headers["Request-Id"] = request.app[STATE].new_id("req")
        return response

    return stripe_shape


def _state(request: web.Request) -> StripeSimState:
    return request.app[STATE]


def _intent(request: web.Request) -> Intent:
    intent_id = request.match_info["intent"]
    intent = _state(request).intents.get(intent_id)
    if intent is None:
        raise StripeFailure(404, f"No such payment_intent: '{intent_id}'", code="resource_missing", param="intent")
    return intent


def _idempotency(request: web.Request, params: list) -> tuple[str | None, bytes]:
    """The request's Idempotency-Key (checked) and the fingerprint of what it asks (`params`)."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 0 < len(key) <= IDEMPOTENCY_KEY_CHARS_MAX:
        raise StripeFailure(400, f"Idempotency-Key must be 1..{IDEMPOTENCY_KEY_CHARS_MAX} characters")
    return key, hashlib.sha256(msgspec.json.encode(params)).digest()


def _replayed(state: StripeSimState, key: str | None, fingerprint: bytes) -> web.Response | None:
    """The answer stored under `key`, replayed as Stripe replays it; None for a new key."""
    stored = state.idempotency.get(key) if key is not None else None
    if stored is None:
        return None
    if stored.fingerprint != fingerprint:
        raise StripeFailure(400, "Keys for idempotent requests can only be used with the same parameters they "
                                 f"were first used with. Try using a key other than '{key}' if you meant to "
                                 "execute a different request.", type_="idempotency_error")
    response = web.Response(body=stored.body, status=stored.status, content_type="application/json")
    response.headers["Idempotent-Replayed"] = "true"
    response.headers["Original-Request"] = stored.request_id
    return response


async def create_intent(request: web.Request) -> web.Response:
    state = _state(request)
    raw = await request.post()
    key, fingerprint = _idempotency(request, ["payment_intent", *sorted(raw.items())])
    if (replayed := _replayed(state, key, fingerprint)) is not None:
        return replayed
    params = _create_params(raw)
    if state.full():
        raise StripeFailure(503, "the simulator holds too many PaymentIntents: POST /_sim/reset", type_="api_error")
    intent = state.create(**params, idempotency_key=key, auth_url=lambda i: _auth_url(request, i))
    if intent.status == "requires_payment_method":  # the attempt was declined: 402 naming the intent
        assert intent.last_payment_error is not None
        status = 402
        body = msgspec.json.encode({"error": {**intent.last_payment_error, "payment_intent": intent.render()}})
    else:
        status, body = 200, msgspec.json.encode(intent.render())
    if key is not None:
        state.remember(key, Stored(fingerprint=fingerprint, status=status, body=body, request_id=state.new_id("req")))
    return web.Response(body=body, status=status, content_type="application/json")


def _create_params(raw) -> dict:
    """Stripe's validation of a create, in Stripe's words; nothing is stored when it refuses."""
    try:
        form = forms.unflatten(raw.items())
    except forms.FormError as exc:
        raise StripeFailure(400, f"Invalid request: {exc}") from None
    for name in form:
        if name not in _PARAMS:
            raise StripeFailure(400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name)
    currency = form.get("currency")
    if not isinstance(currency, str) or currency not in CURRENCIES:
        raise StripeFailure(400, f"Invalid currency: {currency!r}.", code="parameter_invalid_string", param="currency")
    amount = _integer(form.get("amount"), "amount")
    if amount < AMOUNT_MIN.get(currency, 1):
        raise StripeFailure(400, "Amount must be at least the minimum charge amount.", code="amount_too_small",
                            param="amount")
    if amount > AMOUNT_MAX:
        raise StripeFailure(400, "Amount must be no more than 99,999,999.", code="amount_too_large", param="amount")
    confirm = form.get("confirm", "false")
    if confirm not in ("true", "false"):
        raise StripeFailure(400, "Invalid boolean: confirm", code="parameter_invalid_boolean", param="confirm")
    if form.get("capture_method", "automatic") != "automatic":
        raise StripeFailure(400, "The simulator captures automatically only.", param="capture_method")
    return_url = form.get("return_url")
    if return_url is not None and (confirm != "true" or not isinstance(return_url, str)):
        raise StripeFailure(400, "return_url can only be used with confirm=true.", param="return_url")
    payment_method = form.get("payment_method")
    if not isinstance(payment_method, str):
        raise StripeFailure(400, "Missing required param: payment_method.", code="parameter_missing",
                            param="payment_method")
    method = testmodes.METHODS.get(payment_method)
    if method is None:
        raise StripeFailure(400, f"No such PaymentMethod: '{payment_method}'", code="resource_missing",
                            param="payment_method")
    types = form.get("payment_method_types", ["card"])
    if not isinstance(types, list) or method.type not in types:
        raise StripeFailure(400, f"The PaymentMethod provided ({method.type}) is not allowed for this PaymentIntent.",
                            code="payment_intent_incompatible_payment_method", param="payment_method")
    if method.type == "us_bank_account" and currency != "usd":
        raise StripeFailure(400, "us_bank_account PaymentIntents must be in usd.", param="currency")
    return {"amount": amount, "currency": currency, "payment_method": payment_method, "method": method,
            "metadata": _metadata(form.get("metadata", {})), "return_url": return_url, "confirm": confirm == "true"}


def _integer(value: object, param: str) -> int:
    if not isinstance(value, str) or not value.isdigit() or len(value) > 12:
        raise StripeFailure(400, f"Invalid integer: {value!r}", code="parameter_invalid_integer", param=param)
    return int(value)


def _metadata(metadata: object) -> dict[str, str]:
    if metadata == "":  # metadata= clears it
        return {}
    if not isinstance(metadata, dict) or len(metadata) > METADATA_KEYS_MAX or any(
            not isinstance(v, str) or len(k) > METADATA_KEY_CHARS_MAX or len(v) > METADATA_VALUE_CHARS_MAX
            for k, v in metadata.items()):
        raise StripeFailure(400, f"Invalid metadata: at most {METADATA_KEYS_MAX} keys of up to "
                                 f"{METADATA_KEY_CHARS_MAX} characters, values up to {METADATA_VALUE_CHARS_MAX}",
                            param="metadata")
    return metadata


def _auth_url(request: web.Request, intent: Intent) -> str:
    path = request.app.router["three_d_secure"].url_for(intent=intent.id).with_query(token=intent.auth_token or "")
    return str(request.url.origin().join(path))


_REFUND_PARAMS = frozenset({"payment_intent", "amount", "metadata", "reason"})


async def create_refund(request: web.Request) -> web.Response:
    """Stripe's POST /v1/refunds, idempotent by Idempotency-Key as every POST is."""
    state = _state(request)
    raw = await request.post()
    key, fingerprint = _idempotency(request, ["refund", *sorted(raw.items())])
    if (replayed := _replayed(state, key, fingerprint)) is not None:
        return replayed
    try:
        form = forms.unflatten(raw.items())
    except forms.FormError as exc:
        raise StripeFailure(400, f"Invalid request: {exc}") from None
    for name in form:
        if name not in _REFUND_PARAMS:
            raise StripeFailure(400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name)
    intent = state.intents.get(form.get("payment_intent") or "")
    if intent is None:
        raise StripeFailure(404, f"No such payment_intent: '{form.get('payment_intent')}'", code="resource_missing",
                            param="payment_intent")
    if intent.status != "succeeded":
        raise StripeFailure(400, f"This PaymentIntent ({intent.id}) does not have a successful charge to refund.",
                            code="charge_not_refundable", param="payment_intent")
    left = intent.amount - state.refunded_minor(intent)
    if left <= 0:
        raise StripeFailure(400, f"Charge {intent.charge_id} has already been refunded.",
                            code="charge_already_refunded")
    amount = _integer(form["amount"], "amount") if "amount" in form else left
    if not 0 < amount <= left:
        raise StripeFailure(400, f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})",
                            code="amount_too_large", param="amount")
    refund = state.refund(intent, amount, _metadata(form.get("metadata", {})))
    body = msgspec.json.encode(refund.render())
    if key is not None:
        state.remember(key, Stored(fingerprint=fingerprint, status=200, body=body, request_id=state.new_id("req")))
    return web.Response(body=body, status=200, content_type="application/json")


async def list_refunds(request: web.Request) -> web.Response:
    intent_id = request.query.get("payment_intent", "")
    found = list(reversed(_state(request).refunds.get(intent_id, [])))
    return _json({"object": "list", "url": "/v1/refunds", "has_more": False,
                  "data": [refund.render() for refund in found]})


async def retrieve_intent(request: web.Request) -> web.Response:
    return _json(_intent(request).render())


async def search_intents(request: web.Request) -> web.Response:
    match = _SEARCH.fullmatch(request.query.get("query", "").strip())
    if match is None or _unescape(match[1]) != ORDER_ID_KEY:
        raise StripeFailure(400, f"The simulator's search understands metadata['{ORDER_ID_KEY}']:'<value>' only.",
                            param="query")
    found = _state(request).search(_unescape(match[2]))
    return _json({"object": "search_result", "url": "/v1/payment_intents/search", "has_more": False,
                  "next_page": None, "data": [intent.render() for intent in found]})


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


async def cancel_intent(request: web.Request) -> web.Response:
    intent = _intent(request)
    form = await request.post()
    if intent.status not in ("requires_payment_method", "requires_confirmation", "requires_action"):
        raise StripeFailure(400, f"You cannot cancel this PaymentIntent because it has a status of {intent.status}.",
                            code="payment_intent_unexpected_state")
    _state(request).cancel(intent, form.get("cancellation_reason"))
    return _json(intent.render())


async def three_d_secure(request: web.Request) -> web.Response:
    """The page a customer authenticates on; visiting it completes (or with outcome=fail, fails)
    the challenge, then sends the customer back to the return_url, as Stripe's test page does."""
    intent = _state(request).intents.get(request.match_info["intent"])
    token = request.query.get("token", "")
    if intent is None or intent.auth_token is None or not hmac.compare_digest(token, intent.auth_token):
        raise web.HTTPNotFound(text="no such authentication")
    approved = request.query.get("outcome", "complete") != "fail"
    _state(request).authenticate(intent, approved)
    if intent.return_url:
        query = urlencode({"payment_intent": intent.id, "payment_intent_client_secret": intent.client_secret,
                           "redirect_status": "succeeded" if intent.status == "succeeded" else "failed"})
        separator = "&" if "?" in intent.return_url else "?"
        raise web.HTTPFound(f"{intent.return_url}{separator}{query}")
    return web.Response(text=f"3-D Secure {'completed' if approved else 'failed'}: {intent.status}\n")


REPORT_TYPE = "balance_change_from_activity.itemized.3"
DAY_S = 86_400
REPORT_RUNS = web.AppKey("stripe_sim_report_runs", dict)


async def create_report_run(request: web.Request) -> web.Response:
    """A report run of the itemized balance change report over one whole UTC day, as Stripe's
    Reporting API takes it; the simulator runs it at once (Stripe: `pending`, then `succeeded`)."""
    form = forms.unflatten((await request.post()).items())
    if form.get("report_type") != REPORT_TYPE:
        raise StripeFailure(400, f"report_type must be {REPORT_TYPE} here", param="report_type")
    params = form.get("parameters") or {}
    start, end = (_integer(params.get(k), f"parameters[{k}]") for k in ("interval_start", "interval_end"))
    if start % DAY_S or end - start != DAY_S:
        raise StripeFailure(400, "the simulator runs the report for one whole UTC day (interval_start at midnight, "
                                 "interval_end a day later)", param="parameters[interval_end]")
    state = _state(request)
    day = datetime.datetime.fromtimestamp(start, datetime.timezone.utc).date()
    _, body = itemized_csv(state.balance, day)
    file_id, run_id = state.new_id("file"), state.new_id("frr")
    url = str(request.url.with_path(request.path.replace("/v1/reporting/report_runs", f"/v1/files/{file_id}/contents"))
              .with_query(None))
    run = {"id": run_id, "object": "reporting.report_run", "report_type": REPORT_TYPE, "livemode": False,
           "parameters": {"interval_start": start, "interval_end": end, **({"columns": params["columns"]}
                                                                           if "columns" in params else {})},
           "status": "succeeded", "created": int(state.kit.clock.now_s()), "succeeded_at": int(state.kit.clock.now_s()),
           "result": {"id": file_id, "object": "file", "purpose": "finance_report_run", "type": "csv",
                      "size": len(body), "url": url}}
    request.app[REPORT_RUNS][run_id] = (run, body)
    return _json(run)


async def retrieve_report_run(request: web.Request) -> web.Response:
    found = request.app[REPORT_RUNS].get(request.match_info["run"])
    if found is None:
        raise StripeFailure(404, f"No such reporting.report_run: '{request.match_info['run']}'", code="resource_missing")
    return _json(found[0])


async def file_contents(request: web.Request) -> web.Response:
    file_id = request.match_info["file"]
    for run, body in request.app[REPORT_RUNS].values():
        if run["result"]["id"] == file_id:
            return web.Response(body=body, content_type="text/csv")
    raise StripeFailure(404, f"No such file upload: '{file_id}'", code="resource_missing")


def create_app(settings: Settings) -> web.Application:
    """The simulator as an aiohttp app (mounted by `paycell psp-sim` under /stripe)."""
    kit = SimKit("stripe", webhook_url=f"{settings.psp_sim_webhook_base_url.rstrip('/')}/psp/webhooks/stripe")
    app = web.Application(client_max_size=BODY_BYTES_MAX, middlewares=[_stripe_shape(settings.stripe_api_key)])
    app[SIM_KIT] = kit
    app[STATE] = StripeSimState(kit, settings.stripe_webhook_secret)
    app[REPORT_RUNS] = {}
    kit.on_reset.append(app[REPORT_RUNS].clear)
    kit.mount(app)
    r = app.router
    r.add_post("/v1/payment_intents", create_intent)
    r.add_get("/v1/payment_intents/search", search_intents)
    r.add_get("/v1/payment_intents/{intent}", retrieve_intent)
    r.add_post("/v1/payment_intents/{intent}/cancel", cancel_intent)
    r.add_post("/v1/refunds", create_refund)
    r.add_get("/v1/refunds", list_refunds)
    r.add_get("/hooks/three_d_secure/{intent}", three_d_secure, name="three_d_secure")
    r.add_post("/v1/reporting/report_runs", create_report_run)
    r.add_get("/v1/reporting/report_runs/{run}", retrieve_report_run)
    r.add_get("/v1/files/{file}/contents", file_contents)
    return app

