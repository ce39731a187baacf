"""The operators' reversal API (issue 13). Every handler calls `require_operator` first: a user's
token is answered 403 `forbidden` before anything is read.

    POST /payments/payment/v1/{payment_id}/reversals   {"user_id", "amount", "currency", "reason"}
         header Idempotency-Key (required): reverse (part of) a completed payment. 201 the reversal
         (requested; the `reverse` step carries it out), 200 the same reversal again for the same
         key and body (Idempotent-Replayed: true); 404 no such payment; 409 payment_not_reversible;
         422 amount_exceeds_remaining, currency_mismatch, reversal_not_supported,
         idempotency_key_reused
    GET  /payments/payment/v1/{payment_id}/reversals?user_id=...   the payment's reversals

A payment id is the client's own UUID (two users may hold the same one), so the operator names
the user too. The `reverse` step is sent after the commit; a lost message is re-driven by the
sweeper when the reversal's lease runs out.
"""
from __future__ import annotations

import uuid
from collections.abc import Mapping

import msgspec
import structlog
from aiohttp import web

from paycell import checkout, money, schemas
from paycell.errors import InvalidRequest, NotFound, Unprocessable
from paycell.http.auth import require_operator
from paycell.http.cursors import check_query_names
from paycell.http.errors import json_response
from paycell.http.payments import PAYMENTS_PATH, check_utf8, require_json
from paycell.http.risk_rules import IDEMPOTENCY_KEY
from paycell.http.state import ENQUEUE, POOL, SETTINGS
from paycell.reversals.request import reverse_payment
from paycell.store import reversals as store

log = structlog.get_logger("paycell.http.reversals")

REVERSALS_PATH = PAYMENTS_PATH + "/{payment_id}/reversals"


def routes() -> list[web.RouteDef]:
    return [web.post(REVERSALS_PATH, create_reversal), web.get(REVERSALS_PATH, list_reversals)]


def _payment_id(request: web.Request) -> str:
    try:
        return str(uuid.UUID(request.match_info["payment_id"]))
    except ValueError:
        raise NotFound("no such payment") from None


async def create_reversal(request: web.Request) -> web.Response:
    operator = require_operator(request)
    payment_id = _payment_id(request)
    key = request.headers.get("Idempotency-Key")
    if key is None or not IDEMPOTENCY_KEY.fullmatch(key):
        raise InvalidRequest("Idempotency-Key is required: 1 to 255 printable ASCII characters",
                             field="Idempotency-Key")
    require_json(request)
    raw = await request.read()
    check_utf8(raw)
    body = checkout.decode(raw, schemas.ReversalIn)
    structlog.contextvars.bind_contextvars(payment_id=payment_id)
    reversal, created = await reverse_and_send(request.config_dict, user_id=body.user_id, payment_id=payment_id,
                                               amount=body.amount, currency=body.currency, reason=body.reason,
                                               operator=operator, request_key=key)
    headers = {} if created else {"Idempotent-Replayed": "true"}
    return json_response(msgspec.json.encode(schemas.reversal_view(reversal)), 201 if created else 200, headers)


async def reverse_and_send(config: Mapping, *, user_id: str, payment_id: str, amount: str, currency: str,
                           reason: str, operator: str, request_key: str) -> tuple[store.Reversal, bool]:
    """Check the amount, currency and reason as given (decimal string, ISO 4217 code, 1 to 500
    characters), reverse_payment, and once committed send the new reversal's `reverse` step: the
    API's and the console's reversal. `config` is a request's config_dict (the console is a
    sub-application: the pool, settings and enqueue are its parent's). Returns what
    reverse_payment does."""
    settings = config[SETTINGS]
    try:
        currency = money.parse_currency(currency)
        amount_minor = money.parse_amount(amount, currency, max_minor=settings.amount_minor_max)
    except money.MoneyError as exc:
        raise Unprocessable(str(exc), code=exc.code, field="amount") from None
    reason = reason.strip()
    if not 0 < len(reason) <= 500:
        raise InvalidRequest("reason must be 1 to 500 characters", field="reason")
    reversal, created = await reverse_payment(config[POOL], settings, user_id=user_id, payment_id=payment_id,
                                              amount_minor=amount_minor, currency=currency, reason=reason,
                                              requested_by=operator, request_key=request_key)
    if created:
        try:
            await config[ENQUEUE]("reverse", reversal.user_id, reversal.reversal_id)
        except Exception:  # the sweeper re-drives it once its lease runs out
            log.warning("enqueue.failed", reversal_id=reversal.reversal_id, exc_info=True)
    return reversal, created


async def list_reversals(request: web.Request) -> web.Response:
    require_operator(request)
    check_query_names(request.query, ("user_id",))
    payment_id = _payment_id(request)
    user_id = request.query.get("user_id")
    if not user_id:
        raise InvalidRequest("user_id is required: whose payment", field="user_id")
    async with request.app[POOL].acquire() as conn:
        found = await store.for_payment(conn, user_id, payment_id)
        if not found and not await store.payment_exists(conn, user_id, payment_id):
            raise NotFound("no such payment")
    return json_response(msgspec.json.encode(schemas.ReversalList(data=[schemas.reversal_view(r) for r in found])))
