"""What the application holds (AppKeys) and what a request carries (RequestKeys), typed."""
from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
from aiohttp import web

from paycell.config import Settings
from paycell.admission.gate import Gate
from paycell.admission.lag import LagSampler
from paycell.http.waiter import Waiter
from paycell.metrics.web import WebMetrics
from paycell.velocity import Velocity

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
ENQUEUE = web.AppKey("enqueue", Callable[..., Awaitable[None]])  # (step, *ids): paycell.actors.broker.send
WAITER = web.AppKey("waiter", Waiter)
VELOCITY = web.AppKey("velocity", Velocity)
ADMISSION = web.AppKey("admission", Gate)  # refuses new payments while the pipeline is behind
LAG = web.AppKey("lag", LagSampler)  # the payments backlog, read from the broker every few hundred ms
METRICS = web.AppKey("metrics", WebMetrics)  # GET /metrics (paycell/metrics/web.py)
CURSOR_KEY = web.AppKey("cursor_key", bytes)  # signs list cursors (paycell.http.cursors)
# Set on a sub-application that authenticates its own requests (the operator console's session
# cookie, paycell/console): the bearer-token middleware leaves its routes alone.
OWN_AUTH = web.AppKey("own_auth", bool)

REQUEST_ID = web.RequestKey("request_id", str)
CALLER = web.RequestKey("caller", str)  # the authenticated user id (the token's `sub`)
ROLES = web.RequestKey("roles", frozenset)  # the token's roles (paycell.http.auth: "operator")
CLIENT_REQUEST_ID = web.RequestKey("client_request_id", str)  # a well-formed X-Request-Id the client sent
