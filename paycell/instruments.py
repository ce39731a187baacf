"""Attaching instruments: a user may pay in from, or out to, only a PSP token they attached.

The HTTP layer calls `attach` and the store's list and detach; the check on payments is in the
statement that accepts them (checkout.gate_for -> payments.accept).
"""
from __future__ import annotations

import uuid

import asyncpg

from paycell import schemas
from paycell.config import Settings
from paycell.errors import NotFound, Unprocessable
from paycell.psp import registry
from paycell.store import instruments


def validate(body: schemas.InstrumentIn, settings: Settings) -> tuple[str, str, str]:
    """(connector, payment_option, token) of an attachable instrument, or the first typed error."""
    if body.payment_option not in registry.OPTION_INSTRUMENT:
        raise Unprocessable(f"payment_option must be one of {', '.join(registry.OPTION_INSTRUMENT)}",
                            code="payment_option_invalid", field="payment_option")
    kind = registry.instrument_kind(body.token)
    if kind is None:
        raise Unprocessable(f"token {body.token[:80]!r} is not a PSP token (`tok_<instrument>_<...>`)",
                            code="token_invalid", field="token")
    if registry.OPTION_INSTRUMENT[body.payment_option] != kind:
        raise Unprocessable(f"payment_option {body.payment_option!r} does not fit a {kind} token",
                            code="payment_option_mismatch", field="payment_option")
    connector = settings.psp_default if body.connector is None else body.connector
    if not registry.registered(connector):
        raise Unprocessable(f"no connector named {connector[:40]!r}", code="connector_unknown", field="connector")
    return connector, body.payment_option, body.token


async def attach(pool: asyncpg.Pool, settings: Settings, caller: str,
                 body: schemas.InstrumentIn) -> tuple[schemas.InstrumentView, bool]:
    """(the caller's instrument, whether it was created now): attaching the same token on the same
    connector again returns the instrument attached first."""
    connector, option, token = validate(body, settings)
    async with pool.acquire() as conn:
        row, created = await instruments.attach(conn, caller, connector=connector, payment_option=option,
                                                provider_token=token)
    return schemas.instrument_view(row), created


def parse_id(text: str) -> str:
    """The UUID behind an `inst_...` id; NotFound for anything that is not one (no such instrument)."""
    hex_part = text.removeprefix(schemas.INSTRUMENT_ID_PREFIX)
    if hex_part == text or len(hex_part) != 32 or not all(c in "0123456789abcdef" for c in hex_part):
        raise NotFound("no such instrument")
    return str(uuid.UUID(hex_part))
