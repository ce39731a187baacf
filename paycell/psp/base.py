"""The PSP adapter protocol: what every payment service provider module implements.

The pipeline speaks only these types. A PSP's own wire format (field names, status words,
error bodies) stays inside that PSP's module.
"""
from __future__ import annotations

from typing import Literal, Protocol

import msgspec

Direction = Literal["payin", "payout"]
Outcome = Literal["succeeded", "declined", "pending"]


class Charge(msgspec.Struct, frozen=True):
    """One money movement asked of a PSP.

    `idempotency_key` is paycell's payment order id, so asking twice can never move money twice.
    """

    idempotency_key: str
    direction: Direction
    amount_minor: int
    currency: str
    instrument: str  # the token the PSP issued for the card, bank account or wallet


class PspResult(msgspec.Struct, frozen=True):
    """What the PSP says happened to a charge."""

    status: Outcome
    psp_reference: str
    decline_code: str | None = None  # set only when `status` is "declined"


class PspError(Exception):
    """A PSP call failed without telling paycell the charge's outcome."""


class PspTransientError(PspError):
    """Outcome unknown (timeout, lost connection, dropped response, 5xx).

    The PSP may have charged: ask `status` before submitting again.
    """


class PspRejected(PspError):
    """The PSP refused the request itself as invalid (400, 404, 422 ...): sending it again
    cannot succeed. It is NOT a decline: it says nothing of a charge an earlier, unanswered
    request may have made under the same key, so the pipeline asks before it fails an order."""


class Psp(Protocol):
    """A payment service provider as the pipeline sees it."""

    name: str

    async def submit(self, charge: Charge) -> PspResult:
        """Charge once per `charge.idempotency_key`; a repeat returns the first outcome."""

    async def status(self, idempotency_key: str) -> PspResult | None:
        """The charge's current outcome, or None when the PSP has no such charge."""

    async def close(self) -> None:
        """Release connections; the adapter may be used again afterwards."""
