"""The PSP connector protocol: what every payment service provider package implements.

The pipeline speaks only these types. A PSP's own wire format (field names, status words,
error bodies, webhook envelopes and signatures) stays inside that PSP's package.

The contract every connector keeps (the conformance suite, tests/psp/, checks it for each one):
- `submit` moves money at most once per `Charge.idempotency_key` (the provider's idempotency
  header carries it, or a key derived from it).
- `status` answers what the provider holds under that key. It returns None ONLY when the
  provider has said it holds no payment under it (the router then may send the order to another
  connector); a connector that cannot ask without submitting (Adyen: no status call) replays the
  submit under the same key, which the provider answers with the first outcome. `status` may
  also advance a payment the customer has approved (PayPal: capture an APPROVED order), itself
  idempotently.
- A technical failure (timeout, connection error, 5xx, 401/403/408/409/429, an unreadable
  answer) raises PspTransientError: the outcome is unknown. A request refused as invalid raises
  PspRejected. A decline is a PspResult with status "declined", never an exception.
- `reverse` takes money back from a succeeded charge at most once per `Reversal.idempotency_key`
  (paycell's reversal id): a pay-in is refunded (whole or in part), a pay-out cancelled or
  recalled where the provider has a way (ReversalUnsupported where it has none, or no longer:
  past a rail's cut-off). `reversal_status` answers what the provider holds under that key,
  None only when it holds no reversal under it; after an unknown outcome it is asked first.
- `verify_webhook` authenticates a delivery in the provider's own scheme and parses it; a forged,
  stale or malformed one raises WebhookRejected and nothing is stored.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Protocol

import msgspec

Direction = Literal["payin", "payout"]
# requires_action: the customer must act at the provider (PayPal approval, 3-D Secure); the
# result's `action_url` is where to send them. The payment continues on the provider's webhook
# (or a poll) once they have.
Outcome = Literal["succeeded", "declined", "pending", "requires_action"]


class Charge(msgspec.Struct, frozen=True, kw_only=True):
    """One money movement asked of a PSP.

    `idempotency_key` is paycell's payment order id, so asking twice can never move money twice.
    """

    idempotency_key: str
    direction: Direction
    amount_minor: int
    currency: str
    instrument: str  # the token or id the PSP issued for the card, bank account or wallet
    payment_option: str = "card"  # card, bank_account, paypal, apple_pay, google_pay
    psp_reference: str | None = None  # the provider's id for this charge, once paycell knows it
    customer_ref: str | None = None  # paycell's user id (Adyen's shopperReference, Stripe metadata)
    return_url: str | None = None  # where the provider sends a customer back after an action


class Reversal(msgspec.Struct, frozen=True, kw_only=True):
    """Money taken back from a succeeded charge: a refund of a pay-in, the recall of a pay-out.

    `idempotency_key` is paycell's reversal id, so asking twice can never reverse twice; `charge`
    is the charge reversed as it was sent (its key, direction, option and the provider's reference)."""

    idempotency_key: str
    charge: Charge
    amount_minor: int
    currency: str
    reason: str = ""


# succeeded: the money is on its way back; failed: the provider refused (nothing moved);
# pending: the provider has accepted it and says later (asked again).
ReversalOutcome = Literal["succeeded", "failed", "pending"]


class ReversalResult(msgspec.Struct, frozen=True, kw_only=True):
    status: ReversalOutcome
    psp_reference: str  # the provider's id of the refund or reversal
    failure_code: str | None = None  # set only when `status` is "failed"


class PspResult(msgspec.Struct, frozen=True, kw_only=True):
    """What the PSP says happened to a charge."""

    status: Outcome
    psp_reference: str
    decline_code: str | None = None  # set only when `status` is "declined"
    action_url: str | None = None  # set only when `status` is "requires_action"


class PspError(Exception):
    """A PSP call failed without telling paycell the charge's outcome."""


class PspTransientError(PspError):
    """Outcome unknown (timeout, lost connection, dropped response, 5xx).

    The PSP may have charged: ask `status` before submitting again. These (and only these)
    count against a connector's circuit breaker.
    """


class PspRejected(PspError):
    """The PSP refused the request itself as invalid (400, 404, 422 ...): sending it again
    cannot succeed. It is NOT a decline: it says nothing of a charge an earlier, unanswered
    request may have made under the same key, so the pipeline asks before it fails an order."""


class ReversalUnsupported(PspRejected):
    """The provider has no way to reverse this charge (a card pay-out), or no longer has one (a
    bank pay-out past the rail's cut-off): nothing was sent."""


class WebhookRejected(Exception):
    """A webhook delivery that is not authentic (bad or missing signature, unknown certificate
    host), stale (outside the provider's tolerance) or unreadable. Nothing of it is stored."""


# What a webhook says happened, in paycell's words:
#   outcome   the charge reached `result.status` (succeeded, declined, pending, requires_action)
#   returned  money the provider had paid is taken back after success (ACH return R01..R29,
#             PayPal PAYMENT.CAPTURE.REVERSED, a chargeback): `return_code` says why
#   approved  the customer completed the action (PayPal CHECKOUT.ORDER.APPROVED, 3-D Secure
#             done): the next step asks `status`, which captures where the provider needs it
#   reversal  a reversal paycell asked for ended (Adyen's REFUND notification: its refunds end
#             only there): `reversal_id` names it, `reversal` says how
#   ignored   authentic, but nothing paycell acts on (stored, then marked applied)
EventKind = Literal["outcome", "returned", "approved", "reversal", "ignored"]


class WebhookEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One authenticated provider event. `event_id` is unique per connector (the inbox's key)."""

    event_id: str
    kind: EventKind
    type: str  # the provider's own event type, e.g. "payment_intent.succeeded", "AUTHORISATION"
    order_id: str | None = None  # paycell's order id, when the provider echoes it back
    psp_reference: str | None = None
    result: PspResult | None = None  # set for kind "outcome"
    return_code: str | None = None  # set for kind "returned"
    amount_minor: int | None = None
    currency: str | None = None
    occurred_at_s: float | None = None  # the provider's timestamp, seconds since the epoch
    reversal_id: str | None = None  # set for kind "reversal"
    reversal: ReversalResult | None = None  # set for kind "reversal"


class Psp(Protocol):
    """A payment service provider as the pipeline sees it."""

    name: str

    async def submit(self, charge: Charge) -> PspResult:
        """Charge once per `charge.idempotency_key`; a repeat returns the first outcome."""

    async def status(self, charge: Charge) -> PspResult | None:
        """The charge's current outcome, or None when the PSP holds no charge under its key."""

    async def reverse(self, reversal: Reversal) -> ReversalResult:
        """Reverse once per `reversal.idempotency_key`; a repeat returns the first outcome."""

    async def reversal_status(self, reversal: Reversal) -> ReversalResult | None:
        """The reversal's current outcome, or None when the PSP holds none under its key."""

    async def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
        """The events of one authentic delivery; raises WebhookRejected otherwise."""

    def webhook_response(self) -> tuple[int, str, bytes]:
        """(status, content type, body) the provider expects once a delivery is stored
        (Adyen: 200 "[accepted]"; most: 200 with any body)."""

    def supports(self, direction: Direction, payment_option: str, currency: str) -> bool:
        """Whether this connector can carry such a payment (the router skips it otherwise)."""

    async def close(self) -> None:
        """Release connections; the adapter may be used again afterwards."""
