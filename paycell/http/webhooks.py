"""`POST /psp/webhooks/{connector}`: a provider's deliveries, verified, stored once, answered fast.

No bearer token: the provider signs the delivery, and its connector's `verify_webhook` checks that
signature in the provider's own scheme. A forged, stale or unreadable delivery is answered 400
`webhook_rejected`, logged with the connector and the reason, and changes nothing. An authentic
one is stored in the inbox (paycell.store.inbox: once per (connector, event_id)), answered with
what the provider expects (`webhook_response()`), and only after the commit handed to the
`apply_event` actor, which moves the payment. A provider's retry of a stored event is answered
the same and sends nothing new, unless the event is still unapplied (then it is sent again: the
actor is idempotent). A send lost to a Redis outage is harmless: the sweeper re-sends unapplied
events (paycell.sweeper).

One adapter per connector per web process, made on its first delivery and closed on shutdown.
"""
from __future__ import annotations

from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from paycell.config import Settings
from paycell.errors import InvalidRequest, NotFound, PaycellError
from paycell.http.payments import require_json
from paycell.http.state import ENQUEUE, POOL, SETTINGS
from paycell.psp import registry
from paycell.psp.base import Psp, WebhookRejected
from paycell.store import inbox

log = structlog.get_logger("paycell.http.webhooks")

WEBHOOK_PATH = "/psp/webhooks/{connector}"
WEBHOOK_ROUTE = "psp_webhook"
EVENTS_PER_DELIVERY_MAX = 100  # Adyen batches at most a few; anything beyond is not a provider
EVENT_ID_CHARS_MAX = 255  # psp_event's bounds (migration 0012)
EVENT_TYPE_CHARS_MAX = 200


class WebhookRefused(PaycellError):
    """The delivery is not authentic, is stale, or cannot be read: nothing of it is stored."""
    code, http_status = "webhook_rejected", 400


class Adapters:
    """The web process's adapter per connector, made on first use and closed with the app."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._adapters: dict[str, Psp] = {}

    def get(self, connector: str) -> Psp:
        """The configured connector's adapter; NotFound for a name nobody registered or configured."""
        if connector not in self._adapters:
            if not registry.registered(connector):
                raise NotFound(f"no connector named {connector[:40]!r}")
            missing = registry.module(connector).missing(self._settings)
            if missing is not None:
                raise NotFound(f"connector {connector!r} is not configured here")
            self._adapters[connector] = registry.adapter_for(connector, self._settings)
        return self._adapters[connector]

    async def running(self, app: web.Application) -> AsyncIterator[None]:
        yield
        for adapter in self._adapters.values():
            await adapter.close()
        self._adapters.clear()


ADAPTERS = web.AppKey("webhook_adapters", Adapters)


def routes() -> list[web.RouteDef]:
    return [web.post(WEBHOOK_PATH, receive, name=WEBHOOK_ROUTE)]


def install(app: web.Application, settings: Settings) -> None:
    app[ADAPTERS] = adapters = Adapters(settings)
    app.cleanup_ctx.append(adapters.running)
    app.router.add_routes(routes())


def body_cap_middleware(settings: Settings):
    """Deliveries get their own body cap (providers' events outgrow the API's); it must be in
    place before the body is read (paycell.http.edge reads it under its deadline)."""
    cap = settings.psp_webhook_body_bytes_max

    @web.middleware
    async def middleware(request: web.Request, handler) -> web.StreamResponse:
        if request.match_info.route.name == WEBHOOK_ROUTE:
            request = request.clone(client_max_size=cap)
        return await handler(request)
    return middleware


def _unstorable(events: list) -> str | None:
    """Why the inbox could not hold these events (its columns' bounds), or None."""
    if not 1 <= len(events) <= EVENTS_PER_DELIVERY_MAX:
        return f"{len(events)} events in one delivery (1..{EVENTS_PER_DELIVERY_MAX})"
    for event in events:
        if not 1 <= len(event.event_id) <= EVENT_ID_CHARS_MAX or len(event.type) > EVENT_TYPE_CHARS_MAX \
                or len(event.psp_reference or "") > EVENT_ID_CHARS_MAX:
            return f"event {event.event_id[:40]!r}: id, type or reference out of bounds"
    return None


async def receive(request: web.Request) -> web.Response:
    connector = request.match_info["connector"]
    adapter = request.app[ADAPTERS].get(connector)
    require_json(request)
    body = await request.read()
    with structlog.contextvars.bound_contextvars(connector=connector):
        try:
            events = await adapter.verify_webhook(request.headers, body)
        except WebhookRejected as exc:
            log.warning("webhook.rejected", reason=str(exc)[:300], body_bytes=len(body))
            raise WebhookRefused(f"the delivery was refused: {exc}"[:300]) from None
        problem = _unstorable(events)
        if problem is not None:
            log.warning("webhook.rejected", reason=problem)
            raise InvalidRequest(f"the delivery cannot be stored: {problem}")
        settings = request.app[SETTINGS]
        async with request.app[POOL].acquire() as conn:  # one statement: atomic without BEGIN/COMMIT
            to_apply = await inbox.store(conn, connector, events, body, retry_s=settings.psp_event_retry_s)
        for event_id, what in to_apply:
            if what == "agrees":  # the order already says so: stored applied, nothing to do
                log.info("webhook.agrees", event_id=event_id)
                continue
            log.info("webhook.stored" if what == "new" else "webhook.resent", event_id=event_id)
            try:
                await request.app[ENQUEUE]("apply_event", connector, event_id)
            except Exception:  # the event is stored: the sweeper sends it on
                log.error("webhook.enqueue_failed", event_id=event_id, exc_info=True)
        if len(to_apply) < len(events):
            log.info("webhook.replayed", events=len(events) - len(to_apply))
    status, content_type, answer = adapter.webhook_response()
    return web.Response(body=answer, status=status, headers={"Content-Type": content_type})
