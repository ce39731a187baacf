"""What the console application holds and what a console request carries, typed."""
from __future__ import annotations

import dramatiq
from aiohttp import web

from paycell.http.auth import Authenticator
from paycell.psp.breakers import Breakers
from paycell.queues import Queues

AUTHENTICATOR = web.AppKey("console_authenticator", Authenticator)  # the API's own token verifier
QUEUES = web.AppKey("console_queues", Queues)  # the broker's queues (Redis or RabbitMQ); blocking: used on threads
BROKER = web.AppKey("console_broker", dramatiq.Broker)  # a dead letter's replay sends its step
BREAKERS = web.AppKey("console_breakers", Breakers)

OPERATOR = web.RequestKey("console_operator", str)  # the signed-in operator's user id
CSRF_TOKEN = web.RequestKey("console_csrf_token", str)  # what this session's forms must post back
