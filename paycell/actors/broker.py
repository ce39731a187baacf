"""The Dramatiq broker, on Redis or on RabbitMQ, with its middleware stack, and sending a step by name.

`PAYCELL_BROKER_URL` chooses: empty, Dramatiq's Redis broker at `PAYCELL_REDIS_URL`; `amqp://` or
`amqps://`, Dramatiq's RabbitMQ broker, which declares every queue durable with a dead-letter
queue (`<queue>.XQ`) and a delay queue (`<queue>.DQ`), persists every message (delivery mode 2),
and here waits for RabbitMQ's publisher confirm before `enqueue` returns. Only the messages move:
breakers, rate limits and velocity counters stay in Redis either way.

Dramatiq binds actors to a process-wide broker when their module is imported, so the worker
entry point (paycell.actors.worker) sets the broker before importing the step modules.
Senders (the web process, the sweeper) only need `send`, which names the step: they never
import actor code.
"""
from __future__ import annotations

import asyncio
import uuid

import asyncpg
import dramatiq
import dramatiq.errors
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AgeLimit, AsyncIO, Callbacks, Pipelines, Retries, ShutdownNotifications, TimeLimit

from paycell.config import Settings
from paycell.errors import LedgerError
from paycell.tls import client as tls_client

PAYMENTS_QUEUE = "payments"
MAINTENANCE_QUEUE = "maintenance"
DEAD_LETTER_TTL_MS = 7 * 86_400_000
STEP_TIME_LIMIT_MS = 120_000
REDIS_TIMEOUT_S = 2
RABBITMQ_HEARTBEAT_S = 30
RABBITMQ_SOCKET_TIMEOUT_S = 2
# Connecting (TCP, TLS, AMQP handshake). Dramatiq tries an enqueue up to 6 times (its
# MAX_ENQUEUE_ATTEMPTS) on a fresh connection each: an unreachable RabbitMQ holds a send for at
# most 6 x this when connections time out rather than being refused.
RABBITMQ_CONNECT_TIMEOUT_S = 2

# step (actor name) -> queue
STEP_QUEUES = {"screen": PAYMENTS_QUEUE, "charge": PAYMENTS_QUEUE, "settle": PAYMENTS_QUEUE,
               "apply_event": PAYMENTS_QUEUE, "proceed": PAYMENTS_QUEUE, "reverse": PAYMENTS_QUEUE,
               "record_dead_letter": MAINTENANCE_QUEUE, "sweep": MAINTENANCE_QUEUE,
               "expire_idempotency_keys": MAINTENANCE_QUEUE, "expire_reviews": MAINTENANCE_QUEUE,
               "train_model": MAINTENANCE_QUEUE, "reconcile_internal": MAINTENANCE_QUEUE,
               "reconcile_nightly": MAINTENANCE_QUEUE, "reconcile_settlement": MAINTENANCE_QUEUE}


class Transient(Exception):
    """A step failed in a way that may pass (a PSP timeout or 5xx, a lost connection)."""


# Failures that may pass on their own: retried with exponential backoff until the budget is
# spent. LedgerError is among them: the database refuses a posting whose order is not (yet) in
# the state that justifies it, and the next attempt re-reads the order under its lock.
RETRYABLE = (
    Transient, LedgerError, OSError, TimeoutError, asyncio.TimeoutError,
    asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.TooManyConnectionsError,
    asyncpg.CannotConnectNowError, asyncpg.DeadlockDetectedError, asyncpg.SerializationError,
    asyncpg.QueryCanceledError, asyncpg.LockNotAvailableError, redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError, dramatiq.errors.BrokerConnectionError,
)


def retry_when(settings: Settings):
    def should_retry(retries: int, exc: BaseException) -> bool:
        # Transient failures only; anything else (a bug, a refused request) is dead-lettered at
        # once. Either way a message that is not retried lands in the dead-letter queue and its
        # order in needs_attention (actors/dead_letter.py): no payment is silently stuck.
        return retries < settings.retries_max and isinstance(exc, RETRYABLE)
    return should_retry


def is_rabbitmq(settings: Settings) -> bool:
    return settings.broker_url.startswith(("amqp://", "amqps://"))


def build_broker(settings: Settings, *, extra_middleware=()) -> dramatiq.Broker:
    middleware = [
        AgeLimit(), TimeLimit(time_limit=STEP_TIME_LIMIT_MS), ShutdownNotifications(), Callbacks(), Pipelines(),
        Retries(max_retries=settings.retries_max, min_backoff=settings.retry_backoff_min_ms,
                max_backoff=settings.retry_backoff_max_ms, retry_when=retry_when(settings)),
        AsyncIO(), *extra_middleware,
    ]
    if is_rabbitmq(settings):
        return _rabbitmq_broker(settings, middleware)
    # Short socket timeouts: an enqueue from the web process must fail fast when Redis is
    # unreachable (the sweeper re-drives the order), never hang the event loop.
    # The pool is built here, not from `url=`, so that rediss:// verifies its server (paycell.tls).
    pool = redis.ConnectionPool.from_url(settings.redis_url, **tls_client.redis_options(settings.redis_url, settings))
    return RedisBroker(connection_pool=pool, middleware=middleware, dead_message_ttl=DEAD_LETTER_TTL_MS,
                       socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S)


def _rabbitmq_broker(settings: Settings, middleware: list) -> dramatiq.Broker:
    # Imported here: pika is only needed when RabbitMQ is chosen.
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    from paycell.actors.quorum import QuorumRabbitmqBroker

    # confirm_delivery: enqueue returns only once RabbitMQ has taken the message (persisted, as its
    # queue is durable; on quorum queues, once a majority of the nodes has it), and an unroutable
    # message raises instead of vanishing.
    kind = QuorumRabbitmqBroker if settings.rabbitmq_queue_type == "quorum" else RabbitmqBroker
    return kind(parameters=[rabbitmq_parameters(settings)], confirm_delivery=True, middleware=middleware)


def rabbitmq_parameters(settings: Settings) -> dict:
    """pika's connection parameters for PAYCELL_BROKER_URL: short timeouts so that an enqueue from
    the web fails fast when RabbitMQ is down (the sweeper re-drives the order), and amqps://
    verifying its server with paycell's client context (system CAs + PAYCELL_TLS_CA_FILE)."""
    import pika

    url = pika.URLParameters(settings.broker_url)
    params = {"host": url.host, "port": url.port, "virtual_host": url.virtual_host, "credentials": url.credentials,
              "heartbeat": RABBITMQ_HEARTBEAT_S, "socket_timeout": RABBITMQ_SOCKET_TIMEOUT_S,
              "stack_timeout": RABBITMQ_CONNECT_TIMEOUT_S, "blocked_connection_timeout": RABBITMQ_CONNECT_TIMEOUT_S,
              "connection_attempts": 1}
    if settings.broker_url.startswith("amqps://"):
        params["ssl_options"] = pika.SSLOptions(tls_client.context(settings.tls_ca_file, crl_file=settings.tls_crl_file), url.host)
    return params


# The steps whose message names one payment order: (user id, order id), the order's key (for one
# release also the order id alone, the form sent before the key carried the user).
ORDER_STEPS = frozenset({"screen", "charge", "settle", "proceed"})


def order_of_message(actor: str, args: list | tuple) -> str | None:
    """The order id a payment step's message names (its last argument, in either form), or None
    (another step, or arguments of neither form)."""
    if actor not in ORDER_STEPS or len(args) not in (1, 2) or not all(isinstance(a, str) for a in args):
        return None
    try:
        return str(uuid.UUID(args[-1]))
    except ValueError:
        return None


def send(broker: dramatiq.Broker, step: str, *ids: str) -> None:
    """Enqueue `step` for one order: (user id, order id), the order's key, so that the step's first
    query goes to the user's shard (or, for `apply_event`, one stored provider event: connector and
    event id; for `reverse`, one reversal: user id and reversal id). Messages carry ids only: the
    rows are the truth."""
    if step in ORDER_STEPS and len(ids) != 2:
        raise ValueError(f"{step} is sent (user_id, order_id), got {ids!r}")
    broker.enqueue(dramatiq.Message(queue_name=STEP_QUEUES[step], actor_name=step, args=ids,
                                    kwargs={}, options={}))
