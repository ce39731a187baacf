"""The reversal policy: what paycell does when the settlement's posting fails past its retries
after the PSP moved the money (the seed's edge cases 6 and 7), per kind of failure.

    ledger_refused      the ledger refused the posting (LedgerError: the database found the order
                        does not justify it, or a ledger rule refused it): retrying cannot help
    ledger_unavailable  the database did not answer (connection lost, timeout, too many clients)
    step_error          anything else: a bug in the step

Each kind maps to `reverse` (refund the pay-in or recall the pay-out at the PSP, record it, and
compensate in the ledger whatever was posted) or `human` (the order waits in needs_attention,
where an operator replays the dead letter or reverses it). PAYCELL_REVERSAL_POLICY sets it; the
defaults (settings.DEFAULT_REVERSAL_POLICY) and why are in the README.

The decision is taken in the dead-letter actor's transaction, under the order's lock, with the
order still in psp_succeeded: the order moves to `reversing` and its reversal is recorded in the
same commit, so a crash leaves either both or neither.
"""
from __future__ import annotations

import uuid

import asyncpg
import structlog

from paycell.config import Settings
from paycell.store import payments
from paycell.store import reversals as store
from paycell.workflow import Order

log = structlog.get_logger("paycell.reversals.policy")

# Exception class names (the last line of a dead letter's traceback) per failure kind.
_UNAVAILABLE = ("PostgresConnectionError", "InterfaceError", "TooManyConnectionsError", "CannotConnectNowError",
                "ConnectionDoesNotExistError", "QueryCanceledError", "TimeoutError", "OSError",
                "ConnectionRefusedError", "ConnectionResetError")


def failure_kind(error: str) -> str:
    """The kind of failure a dead letter's last traceback line names."""
    name = error.split(":", 1)[0].rsplit(".", 1)[-1].strip()
    if name in ("LedgerError", "LedgerKeyReused", "InsufficientFunds"):
        return "ledger_refused"
    if name in _UNAVAILABLE:
        return "ledger_unavailable"
    return "step_error"


def action_for(settings: Settings, kind: str) -> str:
    return settings.reversal_policy.get(kind, "human")


async def reverse_unposted(conn: asyncpg.Connection, settings: Settings, order: Order, *, kind: str,
                           error: str) -> store.Reversal:
    """Move `order` (locked, psp_succeeded) to `reversing` and record its whole reversal, in the
    caller's transaction; the caller sends `reverse` after the commit."""
    await payments.move(conn, order, "reversing", event="order.reversing",
                        data={"reason": "posting_failed", "failure_kind": kind, "error": error[:500]},
                        failure_code="posting_failed", last_error=error[:500])
    reversal = await store.insert(
        conn, user_id=order.user_id, reversal_id=_policy_reversal_id(order), payment_id=order.payment_id,
        order_id=order.payment_order_id, origin="policy", requested_by=f"policy:{kind}",
        amount_minor=order.amount_minor, currency=order.currency,
        reason=f"the settlement's posting failed past its retries ({kind})", psp=order.psp,
        lease_until=payments.lease(settings.psp_lease_s))
    log.warning("order.reversing", order_id=order.payment_order_id, reversal_id=reversal.reversal_id, kind=kind)
    return reversal


def _policy_reversal_id(order: Order) -> str:
    """One policy reversal per order, whoever decides it: derived from the order id."""
    return str(uuid.uuid5(uuid.UUID(order.payment_order_id), "policy-reversal"))
