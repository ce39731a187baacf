"""Attaching instruments: a user may pay in from, or out to, only a PSP token they attached.

The HTTP layer calls `attach` and the store's list and detach; the check on payments is in the
statement that accepts them (checkout.gate_for -> payments.accept).
"""
from __future__ import annotations

import uuid

import asyncpg

from paycell import refs, schemas
from paycell.config import Settings
from paycell.errors import NotFound, Unprocessable
from paycell.psp import registry, routing
from paycell.store import instruments


def validate(body: schemas.InstrumentIn, settings: Settings) -> tuple[str, str, str]:
    """(connector, payment_option, token) of an attachable instrument, or the first typed error.

    The token must be what the connector issues for the payment option (its TOKEN_PATTERNS).
    Without a `connector`, the first connector routed for the option whose tokens look like this
    one takes it (else PAYCELL_PSP_DEFAULT)."""
    if body.payment_option not in registry.PAYMENT_OPTIONS:
        raise Unprocessable(f"payment_option must be one of {', '.join(registry.PAYMENT_OPTIONS)}",
                            code="payment_option_invalid", field="payment_option")
    if body.connector is None:
        routed = routing.connectors_for_option(settings, body.payment_option)
        connector = next((c for c in routed if registry.token_fits(c, body.payment_option, body.token, settings)),
                         settings.psp_default)
    else:
        connector = registry.canonical(body.connector)
        if not registry.registered(connector, settings):
            raise Unprocessable(f"no connector named {body.connector[:40]!r}", code="connector_unknown",
                                field="connector")
    if not refs.TOKEN.fullmatch(body.token):
        raise Unprocessable(f"token {body.token[:80]!r} is not a PSP token", code="token_invalid", field="token")
    if not registry.token_fits(connector, body.payment_option, body.token, settings):
        fits = registry.options_fitting(connector, body.token, settings)
        if fits:
            raise Unprocessable(f"payment_option {body.payment_option!r} does not fit this {connector} token "
                                f"(a {', '.join(fits)} token)", code="payment_option_mismatch", field="payment_option")
        raise Unprocessable(f"token {body.token[:80]!r} is not a token {connector} issues for "
                            f"{body.payment_option}", code="token_invalid", field="token")
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
