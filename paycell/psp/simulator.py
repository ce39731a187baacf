"""A fake PSP over real HTTP, for dev, demo and tests. State lives in memory.

Wire format (JSON; amounts are integers of minor units, as many real PSPs send them):

    POST /v1/charges          header Idempotency-Key (1..255 chars, required)
                              body {"direction": "payin"|"payout", "amount_minor": int > 0,
                                    "currency": "USD", "instrument": "tok_card_ok",
                                    "return_url"?: where `authorize` sends the customer back}
        201 charge created, 200 replay of the charge stored under that key
        400 no key / malformed body, 422 key reused with another body, 503 unavailable
    GET  /v1/charges/{key}    200 charge, 404 none under that key
    GET  /v1/stats            {"charges": distinct charges created (any outcome), "paid": n,
                               "submits": POSTs received}
    GET  /v1/stats/{key}      {"submits": POSTs for that key, "charged": money moved}
    POST /v1/reset            forget everything
    POST /v1/outage           {"outage": true|false}: while on, every /v1/charges request answers
                              503 and nothing happens (an outage)
    GET  /v1/outage           {"outage": bool, "refused": requests answered 503 by outages, "gets": status GETs}

A charge: {"key", "reference": "ch_<hex>", "state": "paid"|"refused"|"processing",
"refusal_code": str|null, "direction", "amount_minor", "currency", "instrument"}.
An error: {"error": code, "message": text}.

The token `tok_<instrument>_<behaviour>` picks what happens, like Stripe's test cards:
    ok       paid
    decline  refused, "card_declined"          nofunds  refused, "insufficient_funds"
    flaky    the first N POSTs for a key answer 503 without charging, then paid (N from
             PAYCELL_PSP_SIM_FLAKY_FAILURES, default 2)
    down     always 503, never charges
    slow     records the charge as paid, then waits `slow_s` before answering (client times out)
    drop     records the charge as paid, then closes the connection without answering
    pending  "processing"; becomes paid once `settle_s` have passed
    action   "requires_action" with an `action_url`: the customer must approve at the simulator
             (GET that URL), which makes it "approved"; the next GET of the charge captures it
             ("paid"), as PayPal's capture of an approved order
    reject   the POST answers 400 "invalid_request" without charging (the request itself refused)
    rotate   records the charge as paid and drops the answer; the next 2 GETs of that charge
             answer 401 "api_key_expired" (an API key mid-rotation), then the charge
    keyfail  as rotate, but every GET answers 401: the outcome stays unknown for good
    norefund paid; every refund of it is refused ("failed", "refund_declined")
    stale    records the charge as paid and drops the answer; the first GET answers 404 (a
             replica that has not seen the charge yet) and a re-POST answers 409
             "idempotency_key_in_use"; later GETs find the charge
    anything else (or a malformed token): refused, "invalid_instrument"
Only the POST that creates a charge is slow or dropped; replays and GETs answer at once.

The provider's back office and the customer:
    GET  /v1/charges/{key}/authorize   the `action_url`: the customer approves (303 to the charge's
                                       `return_url`, or 200 without one), 409 otherwise
    POST /v1/charges/{key}/return      {"return_code": "R01"}: a paid charge is returned (ACH return,
                                       chargeback); 409 unless paid
    POST /v1/charges/{key}/refunds     header Idempotency-Key (the reversal's key, required), body
                                       {"amount_minor": int > 0, "currency": "USD"}: take back (part
                                       of) a paid charge, a pay-in's refund or a pay-out's recall.
                                       201 the refund {"key", "reference": "re_<hex>", "charge_key",
                                       "amount_minor", "currency", "state": "succeeded"|"failed",
                                       "failure_code"}, 200 its replay; 404 no such charge, 409
                                       "not_paid", 422 "amount_exceeds_charge" (more than what is left
                                       of it), "currency_mismatch" or "idempotency_key_reused"
    GET  /v1/charges/{key}/refunds     the charge's refunds, oldest first
    GET  /v1/refunds/{key}             200 the refund made under that key, 404 none
    POST /v1/charges/{key}/webhooks    {"state": "processing"}: deliver an event saying the charge
                                       is (or was) in that state now, whatever it is: a late or
                                       out-of-order delivery a receiver must survive

Webhooks (only once a receiver is set: `POST /_sim/webhooks {"url": ...}`, see paycell.psp.simkit,
which also serves faults, the clock and `/_sim/charges`): every change of a charge's state is
POSTed as {"id": "evt_<hex>", "type": "charge.<state>", "created": <epoch s>, "data": <charge>},
signed `Paycell-Sim-Signature: t=<epoch s>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>` with
PAYCELL_PSP_SIM_WEBHOOK_SECRET (no secret: no webhooks). Types: charge.paid, charge.refused,
charge.processing, charge.requires_action, charge.approved, charge.returned.

Run it: `python -m paycell.psp.simulator --port 8090` (`slow_s` from PAYCELL_PSP_SIM_SLOW_S,
default 8, or `?slow_s=` on a POST; `settle_s` from PAYCELL_PSP_SIM_SETTLE_S, default 2).
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import hmac
import os
import secrets
import time
from typing import Annotated, Literal
from urllib.parse import quote

import msgspec
import structlog
from aiohttp import web

from paycell.config.settings import Settings, load
from paycell.psp import sims
from paycell.psp.simkit import SimCharge, SimKit, SimRefund
from paycell.psp.tokens import split_token

log = structlog.get_logger("paycell.psp.simulator")

KEY_CHARS_MAX = 255
KEYS_MAX = 100_000  # distinct keys remembered before the simulator answers 503 (PAYCELL_PSP_SIM_KEYS_MAX)
SLOW_S_MAX = 60.0
FLAKY_FAILURES = 2
BODY_BYTES_MAX = 4_096
SHUTDOWN_GRACE_S = 5  # SIGTERM: requests in flight (a slow one included) get this long, then the process exits
SETTLE_TIMER_SLACK_S = 0.05  # the event loop's timer may fire a hair before time.monotonic() agrees

State = Literal["paid", "refused", "processing", "requires_action", "approved", "returned"]
SIGNATURE_HEADER = "Paycell-Sim-Signature"
# The simulator's states as the kit's record of charges names them.
_KIT_STATUS = {"paid": "succeeded", "refused": "declined", "processing": "pending",
               "requires_action": "requires_action", "approved": "requires_action", "returned": "returned"}

_REFUSALS = {"decline": "card_declined", "nofunds": "insufficient_funds"}
_PAID_LATER = frozenset({"ok", "flaky", "slow", "drop", "rotate", "keyfail", "stale", "norefund"})
# Behaviours whose POST records the charge and then drops the connection without answering.
_DROPPED = frozenset({"drop", "rotate", "keyfail", "stale"})
ROTATE_UNAUTHORISED_GETS = 2


class ChargeRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    direction: Literal["payin", "payout"]
    amount_minor: Annotated[int, msgspec.Meta(gt=0)]
    currency: Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")]
    instrument: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    return_url: Annotated[str, msgspec.Meta(max_length=2048)] | None = None  # after the customer acts


class WireCharge(msgspec.Struct):
    key: str
    reference: str
    state: State
    refusal_code: str | None
    direction: str
    amount_minor: int
    currency: str
    instrument: str
    action_url: str | None = None
    return_code: str | None = None


class _Return(msgspec.Struct, forbid_unknown_fields=True):
    return_code: Annotated[str, msgspec.Meta(pattern="^[A-Za-z0-9_]{1,16}$")]


class _Replay(msgspec.Struct, forbid_unknown_fields=True):
    state: State


class RefundRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    amount_minor: Annotated[int, msgspec.Meta(gt=0)]
    currency: Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")]
    reason: Annotated[str, msgspec.Meta(max_length=500)] = ""


class WireRefund(msgspec.Struct):
    key: str
    reference: str
    charge_key: str
    amount_minor: int
    currency: str
    state: Literal["succeeded", "failed"]
    failure_code: str | None = None


class _StoredRefund(msgspec.Struct):
    request: RefundRequest
    refund: WireRefund


class _Stored(msgspec.Struct):
    request: ChargeRequest
    charge: WireCharge
    settles_at_s: float | None = None  # monotonic time a "processing" charge becomes paid
    refunded_minor: int = 0  # what succeeded refunds took back


class SimState:
    """Every charge, counter and per-key lock of one simulator."""

    def __init__(self, slow_s: float, settle_s: float, flaky_failures: int = FLAKY_FAILURES,
                 kit: SimKit | None = None, webhook_secret: str = "", keys_max: int = KEYS_MAX) -> None:
        self.slow_s = slow_s
        self.keys_max = keys_max
        self.settle_s = settle_s
        self.flaky_failures = flaky_failures
        self.kit = kit or SimKit("test")
        self.webhook_secret = webhook_secret
        self.reset()

    def reset(self) -> None:
        self.charges: dict[str, _Stored] = {}
        self.refunds: dict[str, _StoredRefund] = {}  # by the refund's idempotency key
        self.submits: collections.Counter[str] = collections.Counter()
        self.submits_total = 0
        self.gets: collections.Counter[str] = collections.Counter()  # status GETs per key
        self.outage = False
        self.refused = 0  # requests answered 503 during an outage
        # One lock per key, so concurrent identical POSTs create one charge and replay it.
        self.locks: collections.defaultdict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)

    def lookup(self, key: str) -> _Stored | None:
        stored = self.charges.get(key)
        if stored is not None and stored.settles_at_s is not None and time.monotonic() >= stored.settles_at_s:
            stored.settles_at_s = None
            self.change(stored, "paid")
        return stored

    def change(self, stored: _Stored, state: State, *, return_code: str | None = None) -> None:
        """Move a charge to `state`, in the kit's record too, and tell the webhook receiver."""
        stored.charge.state = state
        if return_code is not None:
            stored.charge.return_code = return_code
        if stored.charge.reference in self.kit.charges:
            self.kit.update(stored.charge.reference, _KIT_STATUS[state], return_code=return_code)
        self.notify(stored.charge)

    def notify(self, charge: WireCharge, state: State | None = None) -> None:
        """Deliver `charge.<state>` (default: its state now), signed, when a receiver is set."""
        outbox = self.kit.outbox
        if not self.webhook_secret or (outbox.config.url is None and not outbox.config.paused):
            return
        state = state or charge.state
        created_s = int(self.kit.clock.now_s())
        event_id = f"evt_{secrets.token_hex(12)}"
        body = msgspec.json.encode({"id": event_id, "type": f"charge.{state}", "created": created_s,
                                    "data": msgspec.structs.replace(charge, state=state)})
        mac = hmac.new(self.webhook_secret.encode(), f"{created_s}.".encode() + body, hashlib.sha256).hexdigest()
        outbox.send(event_id, f"charge.{state}", {"Content-Type": "application/json",
                                                  SIGNATURE_HEADER: f"t={created_s},v1={mac}"}, body)

    def record(self, key: str, request: ChargeRequest, behaviour: str, origin: str = "") -> _Stored:
        state: State = "paid"
        refusal_code = action_url = None
        settles_at_s = None
        if behaviour == "pending":
            state, settles_at_s = "processing", time.monotonic() + self.settle_s
            # Settle on time even when nobody asks, so that the webhook says so.
            asyncio.get_running_loop().call_later(self.settle_s + SETTLE_TIMER_SLACK_S, self.lookup, key)
        elif behaviour == "action":
            state, action_url = "requires_action", f"{origin}/v1/charges/{quote(key, safe='')}/authorize"
        elif behaviour not in _PAID_LATER:
            state, refusal_code = "refused", _REFUSALS.get(behaviour, "invalid_instrument")
        charge = WireCharge(
            key=key, reference=f"ch_{secrets.token_hex(12)}", state=state, refusal_code=refusal_code,
            direction=request.direction, amount_minor=request.amount_minor,
            currency=request.currency, instrument=request.instrument, action_url=action_url,
        )
        stored = self.charges[key] = _Stored(request, charge, settles_at_s)
        now_s = self.kit.clock.now_s()
        self.kit.record(SimCharge(reference=charge.reference, order_key=key, direction=request.direction,
                                  amount_minor=request.amount_minor, currency=request.currency,
                                  status=_KIT_STATUS[state], created_s=now_s, updated_s=now_s))
        self.notify(charge)
        log.info("psp_sim.charge", key=key, behaviour=behaviour, state=state, refusal_code=refusal_code)
        return stored


SIM_STATE = web.AppKey("psp_sim_state", SimState)


def _json(payload: object, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(payload), status=status, content_type="application/json")


def _error(status: int, code: str, message: str) -> web.Response:
    return _json({"error": code, "message": message}, status)


def _behaviour(instrument: str) -> str:
    parts = split_token(instrument)
    return parts[1] if parts else "invalid"


def _slow_s(request: web.Request, state: SimState) -> float | None:
    raw = request.query.get("slow_s")
    if raw is None:
        return state.slow_s
    try:
        slow_s = float(raw)
    except ValueError:
        return None
    return slow_s if 0 <= slow_s <= SLOW_S_MAX else None


def _in_outage(state: SimState) -> web.Response | None:
    if not state.outage:
        return None
    state.refused += 1
    return _error(503, "outage", "the simulator is in an outage (POST /v1/outage)")


async def post_charge(request: web.Request) -> web.Response:
    state = request.app[SIM_STATE]
    if refused := _in_outage(state):
        return refused
    state.submits_total += 1
    key = request.headers.get("Idempotency-Key", "")
    if not 0 < len(key) <= KEY_CHARS_MAX:
        return _error(400, "idempotency_key_required", f"Idempotency-Key must be 1..{KEY_CHARS_MAX} chars")
    slow_s = _slow_s(request, state)
    if slow_s is None:
        return _error(400, "invalid_slow_s", f"slow_s must be a number of seconds in 0..{SLOW_S_MAX}")
    try:
        body = msgspec.json.decode(await request.read(), type=ChargeRequest)
    except msgspec.DecodeError as exc:
        return _error(400, "invalid_body", str(exc))
    if key not in state.submits and len(state.submits) >= state.keys_max:
        return _error(503, "full", "the simulator remembers too many keys; POST /v1/reset")
    state.submits[key] += 1

    behaviour = _behaviour(body.instrument)
    async with state.locks[key]:
        stored = state.lookup(key)
        if stored is not None and behaviour == "stale":
            return _error(409, "idempotency_key_in_use", "a request with this key is still being processed")
        if stored is not None:
            if stored.request != body:
                return _error(422, "idempotency_key_reused", "this key was used with another body")
            return _json(stored.charge)
        if behaviour == "down" or (behaviour == "flaky" and state.submits[key] <= state.flaky_failures):
            return _error(503, "unavailable", f"instrument behaviour {behaviour!r}")
        if behaviour == "reject":
            return _error(400, "invalid_request", "the PSP refused this request")
        stored = state.record(key, body, behaviour, origin=str(request.url.origin()))

    # Outside the lock: a slow or dropped answer must not hold up replays and status checks.
    if behaviour == "slow":
        await asyncio.sleep(slow_s)
    elif behaviour in _DROPPED and request.transport is not None:
        request.transport.close()  # the charge is recorded; the client never hears of it
    return _json(stored.charge, 201)


async def get_charge(request: web.Request) -> web.Response:
    state = request.app[SIM_STATE]
    if refused := _in_outage(state):
        return refused
    key = request.match_info["key"]
    state.gets[key] += 1
    stored = state.lookup(key)
    behaviour = _behaviour(stored.request.instrument) if stored else None
    if behaviour == "keyfail" or (behaviour == "rotate" and state.gets[key] <= ROTATE_UNAUTHORISED_GETS):
        return _error(401, "api_key_expired", "the API key used is not valid (any more)")
    if behaviour == "stale" and state.gets[key] == 1:
        stored = None
    if stored is None:
        return _error(404, "no_such_charge", "no charge under this key")
    if stored.charge.state == "approved":
        state.change(stored, "paid")  # the capture of a charge its customer approved
    return _json(stored.charge)


class _Refusal(Exception):
    def __init__(self, response: web.Response) -> None:
        self.response = response


async def _back_office(request: web.Request, body_type=None) -> tuple[SimState, _Stored, object]:
    """(state, the charge named in the path, the decoded body) for the back-office routes."""
    state = request.app[SIM_STATE]
    stored = state.lookup(request.match_info["key"])
    if stored is None:
        raise _Refusal(_error(404, "no_such_charge", "no charge under this key"))
    if body_type is None:
        return state, stored, None
    try:
        return state, stored, msgspec.json.decode(await request.read(), type=body_type)
    except msgspec.DecodeError as exc:
        raise _Refusal(_error(400, "invalid_body", str(exc))) from None


async def authorize(request: web.Request) -> web.Response:
    """The customer approves the charge at the provider (what they reach through `action_url`)."""
    try:
        state, stored, _ = await _back_office(request)
    except _Refusal as refusal:
        return refusal.response
    if stored.charge.state != "requires_action":
        return _error(409, "not_awaiting_approval", f"the charge is {stored.charge.state}")
    state.change(stored, "approved")
    if stored.request.return_url:  # the customer's browser goes back to the merchant
        raise web.HTTPSeeOther(location=stored.request.return_url)
    return _json({"approved": True, "reference": stored.charge.reference})


async def return_charge(request: web.Request) -> web.Response:
    """The provider takes a paid charge back (an ACH return, a chargeback)."""
    try:
        state, stored, body = await _back_office(request, _Return)
    except _Refusal as refusal:
        return refusal.response
    if stored.charge.state != "paid":
        return _error(409, "not_paid", f"the charge is {stored.charge.state}")
    state.change(stored, "returned", return_code=body.return_code)
    return _json(stored.charge)


async def post_refund(request: web.Request) -> web.Response:
    """Refund (part of) a paid charge once per Idempotency-Key (a pay-out: recall it)."""
    state = request.app[SIM_STATE]
    if refused := _in_outage(state):
        return refused
    key = request.headers.get("Idempotency-Key", "")
    if not 0 < len(key) <= KEY_CHARS_MAX:
        return _error(400, "idempotency_key_required", f"Idempotency-Key must be 1..{KEY_CHARS_MAX} chars")
    try:
        _, stored, body = await _back_office(request, RefundRequest)
    except _Refusal as refusal:
        return refusal.response
    charge_key = request.match_info["key"]
    async with state.locks[f"refund:{charge_key}"]:
        done = state.refunds.get(key)
        if done is not None:
            if done.request != body or done.refund.charge_key != charge_key:
                return _error(422, "idempotency_key_reused", "this key was used with another body")
            return _json(done.refund)
        if stored.charge.state != "paid":
            return _error(409, "not_paid", f"the charge is {stored.charge.state}")
        if body.currency != stored.charge.currency:
            return _error(422, "currency_mismatch", f"the charge is in {stored.charge.currency}")
        if body.amount_minor > stored.charge.amount_minor - stored.refunded_minor:
            return _error(422, "amount_exceeds_charge",
                          f"{stored.charge.amount_minor - stored.refunded_minor} of the charge is left to refund")
        refused = _behaviour(stored.request.instrument) == "norefund"
        refund = WireRefund(key=key, reference=f"re_{secrets.token_hex(12)}", charge_key=charge_key,
                            amount_minor=body.amount_minor, currency=body.currency,
                            state="failed" if refused else "succeeded",
                            failure_code="refund_declined" if refused else None)
        state.refunds[key] = _StoredRefund(body, refund)
        state.kit.record_refund(SimRefund(reference=refund.reference, charge_reference=stored.charge.reference,
                                          order_key=charge_key, key=key, amount_minor=body.amount_minor,
                                          currency=body.currency, status=refund.state,
                                          created_s=state.kit.clock.now_s()))
        if not refused:
            stored.refunded_minor += body.amount_minor
            if stored.refunded_minor == stored.charge.amount_minor and stored.charge.reference in state.kit.charges:
                state.kit.update(stored.charge.reference, "refunded" if stored.charge.direction == "payin"
                                 else "cancelled")
        log.info("psp_sim.refund", key=key, charge_key=charge_key, amount_minor=body.amount_minor,
                 state=refund.state)
    return _json(refund, 201)


async def list_refunds(request: web.Request) -> web.Response:
    state = request.app[SIM_STATE]
    charge_key = request.match_info["key"]
    return _json([r.refund for r in state.refunds.values() if r.refund.charge_key == charge_key])


async def get_refund(request: web.Request) -> web.Response:
    state = request.app[SIM_STATE]
    if refused := _in_outage(state):
        return refused
    done = state.refunds.get(request.match_info["key"])
    if done is None:
        return _error(404, "no_such_refund", "no refund under this key")
    return _json(done.refund)


async def replay_webhook(request: web.Request) -> web.Response:
    """Deliver an event saying the charge is in `state`, whatever it is now (a late delivery)."""
    try:
        state, stored, body = await _back_office(request, _Replay)
    except _Refusal as refusal:
        return refusal.response
    state.notify(stored.charge, body.state)
    return _json({"sent": f"charge.{body.state}"})


async def get_stats(request: web.Request) -> web.Response:
    state = request.app[SIM_STATE]
    paid = sum(1 for key in state.charges if state.lookup(key).charge.state == "paid")
    return _json({"charges": len(state.charges), "paid": paid, "submits": state.submits_total})


async def get_key_stats(request: web.Request) -> web.Response:
    state = request.app[SIM_STATE]
    key = request.match_info["key"]
    stored = state.lookup(key)
    charged = stored is not None and stored.charge.state == "paid"
    return _json({"submits": state.submits[key], "charged": charged})


class _Outage(msgspec.Struct, forbid_unknown_fields=True):
    outage: bool


async def post_outage(request: web.Request) -> web.Response:
    state = request.app[SIM_STATE]
    try:
        state.outage = msgspec.json.decode(await request.read(), type=_Outage).outage
    except msgspec.DecodeError as exc:
        return _error(400, "invalid_body", str(exc))
    return _json({"outage": state.outage})


async def get_outage(request: web.Request) -> web.Response:
    state = request.app[SIM_STATE]
    return _json({"outage": state.outage, "refused": state.refused, "gets": sum(state.gets.values())})


async def post_reset(request: web.Request) -> web.Response:
    request.app[SIM_STATE].reset()
    return _json({"reset": True})


def _env_s(name: str, default_s: float) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default_s
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number of seconds") from None


def create_sim_app(slow_s: float | None = None, settle_s: float | None = None,
                   settings: Settings | None = None, webhook_secret: str | None = None) -> web.Application:
    """The simulator as an aiohttp app; unset delays come from PAYCELL_PSP_SIM_SLOW_S / _SETTLE_S,
    an unset webhook secret from PAYCELL_PSP_SIM_WEBHOOK_SECRET (settings'). With `settings`, the
    provider simulators (paycell.psp.sims) are served under their prefixes. Webhooks go nowhere
    until a test or an operator sets the receiver (`POST /_sim/webhooks`)."""
    app = web.Application(client_max_size=BODY_BYTES_MAX)
    if webhook_secret is None:
        webhook_secret = settings.psp_sim_webhook_secret if settings else os.environ.get(
            "PAYCELL_PSP_SIM_WEBHOOK_SECRET", "")
    kit = SimKit("test")
    kit.mount(app)
    app[SIM_STATE] = state = SimState(
        slow_s=_env_s("PAYCELL_PSP_SIM_SLOW_S", 8.0) if slow_s is None else slow_s,
        settle_s=_env_s("PAYCELL_PSP_SIM_SETTLE_S", 2.0) if settle_s is None else settle_s,
        flaky_failures=int(_env_s("PAYCELL_PSP_SIM_FLAKY_FAILURES", FLAKY_FAILURES)),
        kit=kit, webhook_secret=webhook_secret, keys_max=int(os.environ.get("PAYCELL_PSP_SIM_KEYS_MAX", KEYS_MAX)),
    )
    kit.on_reset.append(state.reset)
    app.router.add_post("/v1/charges", post_charge)
    app.router.add_get("/v1/charges/{key}", get_charge)
    app.router.add_get("/v1/charges/{key}/authorize", authorize)
    app.router.add_post("/v1/charges/{key}/return", return_charge)
    app.router.add_post("/v1/charges/{key}/webhooks", replay_webhook)
    app.router.add_post("/v1/charges/{key}/refunds", post_refund)
    app.router.add_get("/v1/charges/{key}/refunds", list_refunds)
    app.router.add_get("/v1/refunds/{key}", get_refund)
    app.router.add_get("/v1/stats", get_stats)
    app.router.add_get("/v1/stats/{key}", get_key_stats)
    app.router.add_post("/v1/reset", post_reset)
    app.router.add_post("/v1/outage", post_outage)
    app.router.add_get("/v1/outage", get_outage)
    if settings is not None:
        sims.mount(app, settings)
    return app


def main(port: int | None = None, host: str = "127.0.0.1") -> None:
    """Serve the simulator until interrupted; the port defaults to PAYCELL_PSP_SIM_PORT.
    Refused when PAYCELL_ENV=production, however it is started."""
    settings = load()
    if settings.env == "production":
        raise SystemExit("the PSP simulator is refused when PAYCELL_ENV=production: it moves no money. "
                         "Run it only in development (unset PAYCELL_ENV)")
    if port is None:
        port = settings.psp_sim_port
    log.info("psp_sim.listening", host=host, port=port)
    web.run_app(create_sim_app(settings=settings), host=host, port=port, print=None, shutdown_timeout=SHUTDOWN_GRACE_S)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=None, help="default: PAYCELL_PSP_SIM_PORT (8090)")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    main(args.port, args.host)
