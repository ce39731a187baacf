"""`SimKit`: one provider simulator's clock, faults, outbox and record of charges, and the
control routes every simulator serves under its prefix:

    GET/POST/DELETE /_sim/faults     the faults in force (see faults.py); DELETE clears them
    GET/POST        /_sim/clock      {"now_s": ...}; POST {"advance_s": n} moves time forward
    GET/POST        /_sim/webhooks   the outbox's config and delivery log; POST sets the config
    POST            /_sim/webhooks/flush   deliver held events
    GET             /_sim/charges    the simulator's own record: one entry per payment it made
    GET             /_sim/refunds    and one per refund (or pay-out recall) it made
    GET             /_sim/reports?date=YYYY-MM-DD   the provider's settlement report for that day
    POST            /_sim/reset      forget everything (charges, faults, clock, outbox)
"""
from __future__ import annotations

import asyncio
import datetime
import random
from collections.abc import Callable
from typing import Annotated, Literal

import msgspec
from aiohttp import web

from paycell.psp.simkit import faults as faults_mod
from paycell.psp.simkit.clock import SimClock
from paycell.psp.simkit.faults import Faults
from paycell.psp.simkit.outbox import Outbox, OutboxConfig

ChargeStatus = Literal["succeeded", "declined", "pending", "requires_action", "returned", "refunded", "cancelled"]


class SimCharge(msgspec.Struct, kw_only=True):
    """One payment as the simulated provider records it: what the conformance suite compares
    with paycell's ledger (exactly one succeeded charge per paid order)."""

    reference: str  # the provider's id (pi_..., pspReference, the PayPal order id, ...)
    order_key: str  # the idempotency key / merchant reference paycell sent: its order id
    direction: Literal["payin", "payout"]
    amount_minor: int
    currency: str
    status: ChargeStatus
    created_s: float
    updated_s: float
    fee_minor: int = 0
    return_code: str | None = None


class SimRefund(msgspec.Struct, kw_only=True):
    """One refund of a pay-in (or recall of a pay-out) as the simulated provider records it: what
    the conformance suite counts (exactly one per reversal paycell asked for)."""

    reference: str  # the provider's id of the refund (re_..., the modification's pspReference, ...)
    charge_reference: str  # the SimCharge it takes back from
    order_key: str  # paycell's order id
    key: str  # the idempotency key paycell sent: its reversal id
    amount_minor: int
    currency: str
    status: Literal["succeeded", "pending", "failed"]
    created_s: float


class _Advance(msgspec.Struct, forbid_unknown_fields=True):
    advance_s: Annotated[float, msgspec.Meta(ge=0, le=400 * 86_400)]


# (content type, body) of the provider's settlement report for one UTC day.
ReportFn = Callable[[datetime.date], tuple[str, bytes]]


class SimKit:
    def __init__(self, name: str, *, webhook_url: str | None = None, seed: int | None = None) -> None:
        self.name = name
        self.clock = SimClock()
        self.faults = Faults()
        self.outbox = Outbox(webhook_url)
        self.charges: dict[str, SimCharge] = {}  # by reference
        self.refunds: list[SimRefund] = []
        self.report: ReportFn | None = None
        self.on_reset: list[Callable[[], None]] = []
        self.on_clock: list[Callable[[], None]] = []  # run after the clock moves (settle, return)
        self.rng = random.Random(seed)
        self.hanging: set[asyncio.Task] = set()  # requests held by the `timeout` fault

    def record(self, charge: SimCharge) -> SimCharge:
        self.charges[charge.reference] = charge
        return charge

    def record_refund(self, refund: SimRefund) -> SimRefund:
        self.refunds.append(refund)
        return refund

    def update(self, reference: str, status: ChargeStatus, *, return_code: str | None = None) -> SimCharge:
        charge = self.charges[reference]
        charge.status = status
        charge.updated_s = self.clock.now_s()
        if return_code is not None:
            charge.return_code = return_code
        return charge

    def reset(self) -> None:
        self.clock.reset()
        self.faults = Faults()
        self.outbox.reset()
        self.charges.clear()
        self.refunds.clear()
        for hook in self.on_reset:
            hook()

    def middleware(self):
        return faults_mod.middleware(lambda: self.faults, self.rng, self.hanging)

    def mount(self, app: web.Application) -> None:
        """Add the `/_sim/...` routes and the faults middleware to a provider's app (before it starts)."""
        app.middlewares.append(self.middleware())
        r = app.router
        r.add_get("/_sim/faults", self._get_faults)
        r.add_post("/_sim/faults", self._set_faults)
        r.add_delete("/_sim/faults", self._clear_faults)
        r.add_get("/_sim/clock", self._get_clock)
        r.add_post("/_sim/clock", self._advance_clock)
        r.add_get("/_sim/webhooks", self._get_webhooks)
        r.add_post("/_sim/webhooks", self._set_webhooks)
        r.add_post("/_sim/webhooks/flush", self._flush_webhooks)
        r.add_get("/_sim/charges", self._get_charges)
        r.add_get("/_sim/refunds", self._get_refunds)
        r.add_get("/_sim/reports", self._get_report)
        r.add_post("/_sim/reset", self._reset)
        app.on_shutdown.append(self._end_hanging)
        app.on_cleanup.append(lambda _app: self.outbox.close())

    async def _end_hanging(self, _app: web.Application) -> None:
        """A stopping simulator ends the requests the `timeout` fault holds (their clients see
        the connection close) instead of waiting out the hang."""
        for task in list(self.hanging):
            task.cancel()

    @staticmethod
    def _json(payload: object, status: int = 200) -> web.Response:
        return web.Response(body=msgspec.json.encode(payload), status=status, content_type="application/json")

    @staticmethod
    async def _decode(request: web.Request, type_):
        try:
            return msgspec.json.decode(await request.read(), type=type_)
        except msgspec.DecodeError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None

    async def _get_faults(self, request: web.Request) -> web.Response:
        return self._json(self.faults)

    async def _set_faults(self, request: web.Request) -> web.Response:
        self.faults = await self._decode(request, Faults)
        return self._json(self.faults)

    async def _clear_faults(self, request: web.Request) -> web.Response:
        self.faults = Faults()
        return self._json(self.faults)

    async def _get_clock(self, request: web.Request) -> web.Response:
        return self._json({"now_s": self.clock.now_s(), "offset_s": self.clock.offset_s})

    async def _advance_clock(self, request: web.Request) -> web.Response:
        body = await self._decode(request, _Advance)
        self.clock.advance(body.advance_s)
        for hook in self.on_clock:
            hook()
        return self._json({"now_s": self.clock.now_s(), "offset_s": self.clock.offset_s})

    async def _get_webhooks(self, request: web.Request) -> web.Response:
        return self._json({"config": self.outbox.config, "held": len(self.outbox.held),
                           "deliveries": list(self.outbox.log)})

    async def _set_webhooks(self, request: web.Request) -> web.Response:
        self.outbox.config = await self._decode(request, OutboxConfig)
        return self._json({"config": self.outbox.config})

    async def _flush_webhooks(self, request: web.Request) -> web.Response:
        return self._json({"flushed": self.outbox.flush()})

    async def _get_charges(self, request: web.Request) -> web.Response:
        return self._json(sorted(self.charges.values(), key=lambda c: c.created_s))

    async def _get_refunds(self, request: web.Request) -> web.Response:
        return self._json(self.refunds)

    async def _get_report(self, request: web.Request) -> web.Response:
        if self.report is None:
            raise web.HTTPNotFound(text=f"the {self.name} simulator has no settlement report")
        try:
            day = datetime.date.fromisoformat(request.query.get("date", ""))
        except ValueError:
            raise web.HTTPBadRequest(text="date=YYYY-MM-DD is required") from None
        content_type, body = self.report(day)
        return web.Response(body=body, content_type=content_type)

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset()
        return self._json({"reset": True})


SIM_KIT = web.AppKey("sim_kit", SimKit)
