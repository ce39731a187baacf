"""Accepting a payment: validate, claim the idempotency key, record the payment, all in one
transaction; then hand the order to the pipeline. The HTTP layer calls `submit` and nothing else."""
from __future__ import annotations

import datetime
import hashlib
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import msgspec
import structlog

from paycell import money, refs, schemas, velocity
from paycell.json_keys import refuse_duplicate_keys
from paycell.psp import routing
from paycell.metrics import outcomes
from paycell.config import Settings
from paycell.errors import (Forbidden, IdempotencyConflict, IdempotencyInProgress, IdempotencyKeyExpired,
                            InstrumentNotAttached, InvalidRequest, RecipientUnknown, Unprocessable)
from paycell.store import idempotency, payments

log = structlog.get_logger("paycell.checkout")

Enqueue = Callable[[str, str], Awaitable[None]]  # (step name, order id)


class Accepted(msgspec.Struct, frozen=True):
    status: int          # 202 (accepted) or what the first request answered, when replayed
    body: bytes          # the encoded PaymentView
    replayed: bool
    payment_id: str
    payment_order_id: str | None  # None when replayed


def decode(raw: bytes, struct: type = schemas.PaymentIn):
    """The request body as `struct` (a strict msgspec Struct), or InvalidRequest naming the field."""
    try:
        body = msgspec.json.decode(raw, type=struct)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(str(exc), field=_field_of(str(exc))) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"body is not valid UTF-8 JSON: {exc}") from None
    refuse_duplicate_keys(raw)
    return body


def _field_of(message: str) -> str | None:
    # msgspec says "... - at `$.amount`" or "Object missing required field `currency`".
    if "`$." in message:
        return message.rsplit("`$.", 1)[1].split("`")[0]
    if "field `" in message:
        return message.rsplit("field `", 1)[1].split("`")[0]
    return None


def validate(body: schemas.PaymentIn, caller: str, settings: Settings) -> payments.NewPayment:
    """The payment the body asks for, or the first typed error it contains."""
    try:
        payment_id = str(uuid.UUID(body.payment_id))
    except ValueError:
        raise Unprocessable("payment_id must be a UUID (the checkout id)", code="payment_id_invalid",
                            field="payment_id") from None
    if body.user_id != caller:
        raise Forbidden("user_id does not match the authenticated user", field="user_id")
    try:
        currency = money.parse_currency(body.currency)
    except money.MoneyError as exc:
        raise Unprocessable(str(exc), code=exc.code, field="currency") from None
    if currency not in settings.wallet_currencies:
        raise Unprocessable(f"wallets cannot hold {currency}; supported: {', '.join(settings.wallet_currencies)}",
                            code="currency_not_supported", field="currency")
    try:
        amount_minor = money.parse_amount(body.amount, currency, max_minor=settings.amount_minor_max)
    except money.MoneyError as exc:
        raise Unprocessable(str(exc), code=exc.code, field="amount") from None
    kind = refs.classify(caller, body.from_acct, body.to_acct, body.payment_option)
    if kind != "transfer":
        field = "from_acct" if kind == "payin" else "to_acct"
        refs.check_instrument(getattr(body, field), field, body.payment_option, currency, settings)
    return payments.NewPayment(
        payment_id=payment_id, payment_order_id=str(uuid.uuid4()), user_id=caller, kind=kind,
        payment_option=body.payment_option, from_acct=body.from_acct, to_acct=body.to_acct,
        amount_minor=amount_minor, currency=currency,
        created_at=datetime.datetime.now(datetime.timezone.utc))


def accepted_view(p: payments.NewPayment) -> schemas.PaymentView:
    ts = p.created_at.isoformat().replace("+00:00", "Z")
    return schemas.PaymentView(
        payment_id=p.payment_id, user_id=p.user_id, kind=p.kind, status="processing",
        amount=money.format_amount(p.amount_minor, p.currency), currency=p.currency, from_acct=p.from_acct,
        to_acct=p.to_acct, payment_option=p.payment_option, is_complete=False, created_at=ts, updated_at=ts,
        orders=[schemas.OrderView(payment_order_id=p.payment_order_id, payment_order_status="requested",
                                  amount=money.format_amount(p.amount_minor, p.currency), currency=p.currency,
                                  ledger_updated=False, wallet_updated=False, psp=None, psp_reference=None,
                                  attempt=0)])


def gate_for(p: payments.NewPayment, settings: Settings) -> payments.Gate:
    """The counterparty the payment must name: a transfer's payee; a pay-in's or pay-out's instrument,
    attached with the payment's option on a connector of its route (paycell.psp.routing)."""
    if p.kind == "transfer":
        return payments.Gate(payee_user_id=refs.parse_ref(p.to_acct, "to_acct").user_id)
    token = p.from_acct if p.kind == "payin" else p.to_acct
    return payments.Gate(connectors=routing.gate_names(settings, p.payment_option, p.currency), provider_token=token)


def refused(p: payments.NewPayment) -> Exception:
    """The error for a payment whose counterparty the gate refused."""
    if p.kind == "transfer":
        return RecipientUnknown(f"{p.to_acct[:80]} is not the open wallet of a paycell user", field="to_acct")
    field = "from_acct" if p.kind == "payin" else "to_acct"
    return InstrumentNotAttached(f"{field} is not an instrument you have attached with payment_option "
                                 f"{p.payment_option!r} on a connector that carries it; attach it first with "
                                 "POST /payments/instrument/v1", field=field)


def request_digest(body: schemas.PaymentIn) -> bytes:
    """What an idempotency key remembers of its request: a replay must hash the same."""
    return hashlib.sha256(msgspec.json.encode(body)).digest()


def scheduled(new: payments.NewPayment, settings: Settings) -> payments.Acceptance:
    """A payment a schedule makes (paycell/schedules/clock.py), for payments.accept_many: keyed,
    answered and gated exactly as `submit` would accept the same body posted by its user."""
    body = schemas.PaymentIn(payment_id=new.payment_id, user_id=new.user_id, from_acct=new.from_acct,
                             to_acct=new.to_acct, amount=money.format_amount(new.amount_minor, new.currency),
                             currency=new.currency, payment_option=new.payment_option)
    return payments.Acceptance(payment=new, request_sha256=request_digest(body),
                               response_body=msgspec.json.encode(accepted_view(new)), gate=gate_for(new, settings))


async def submit(pool: asyncpg.Pool, settings: Settings, caller: str, raw: bytes, *, wait_s: float,
                 enqueue: Enqueue, limits: velocity.Velocity | None = None,
                 client: tuple[str | None, str | None] = (None, None)) -> Accepted:
    """Accept a payment exactly once per (caller, checkout UUID).

    The same UUID with the same body replays the first answer; with another body it is
    IdempotencyConflict; while a first request still waits on it, IdempotencyInProgress; once its
    key has expired, IdempotencyKeyExpired. `limits` admits the request (rate limits, blocked
    instruments) before anything is written; `client` is the request's (IP, country) for the risk
    rules, recorded with the payment and outside its idempotency hash. A payment whose counterparty is refused
    (RecipientUnknown, InstrumentNotAttached) writes nothing; a replay of an accepted one still
    replays, even after its instrument was detached.
    """
    body = decode(raw)
    new = validate(body, caller, settings)
    if limits is not None:
        field, instrument = velocity.instrument_of(new.kind, new.from_acct, new.to_acct) or (None, None)
        await limits.admit(caller, instrument, field=field)
    new = msgspec.structs.replace(new, notify_on_done=wait_s > 0, client_ip=client[0], client_country=client[1])
    # The key is the canonical UUID: the same checkout id spelt in upper case, as a urn:uuid: or in
    # braces is the same payment, so it must hash as the same request (a replay, not a conflict).
    request_sha256 = request_digest(msgspec.structs.replace(body, payment_id=new.payment_id))
    response = msgspec.json.encode(accepted_view(new))
    async with pool.acquire() as conn:
        try:
            claimed = await payments.accept(conn, new, request_sha256=request_sha256, response_status=202,
                                            response_body=response,
                                            lock_s=wait_s + settings.idempotency_lock_s if wait_s > 0 else 0,
                                            lease_s=settings.psp_lease_s, deadline_s=settings.order_deadline_s,
                                            gate=gate_for(new, settings))
        except asyncpg.UniqueViolationError as exc:
            # The key was free but the payment exists: its key expired (retention). The statement
            # failed whole, so nothing was written.
            if exc.constraint_name != payments.REQUEST_PKEY:
                raise
            raise IdempotencyKeyExpired(
                f"payment_id {new.payment_id} belongs to an earlier payment whose idempotency key expired "
                f"(kept {settings.idempotency_key_retention_s} s): the payment can still be read under "
                "this id, and a new payment needs a new payment_id", field="payment_id") from None
        stored = None if claimed else await idempotency.stored(conn, user_id=caller, key=new.payment_id)
    if claimed is None and stored is None:
        raise refused(new)
    if stored is not None:
        if stored.request_sha256 != request_sha256:
            raise IdempotencyConflict("this payment_id was used before with a different request", field="payment_id")
        if stored.locked:
            raise IdempotencyInProgress("a request with this payment_id is still being handled; retry shortly",
                                        field="payment_id")
        return Accepted(stored.status, stored.body, True, new.payment_id, None)
    log.info("payment.accepted", payment_id=new.payment_id, order_id=new.payment_order_id, kind=new.kind)
    outcomes.accepted(new.kind)
    try:
        await enqueue("screen", new.user_id, new.payment_order_id)
    except Exception:  # the payment is durable: the re-drive sweeper will send it on
        log.warning("enqueue.failed", payment_id=new.payment_id, exc_info=True)
    return Accepted(202, response, False, new.payment_id, new.payment_order_id)


async def finish_wait(pool: asyncpg.Pool, caller: str, payment_id: str) -> tuple[int, bytes]:
    """After a client's wait: 201 with the payment if it reached a terminal state, else 202;
    stored as the key's answer so that replays say the same."""
    async with pool.acquire() as conn, conn.transaction():
        found = await payments.get(conn, caller, payment_id)
        req, orders = found
        status = 201 if req["status"] != "processing" else 202
        body = msgspec.json.encode(schemas.payment_view(req, orders))
        await idempotency.complete(conn, user_id=caller, key=payment_id, status=status, body=body)
    return status, body
