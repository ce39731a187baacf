"""Reconciliation fixtures: a worker-less Context (the pool, a broker, the connectors) and files of
each provider's settlement report written by the simulators' own report builders."""
from __future__ import annotations

import datetime
import time
import uuid

import pytest

from paycell.actors.context import Context
from paycell.psp.stripe import report as stripe_report
from paycell.store import payments
from paycell.store.db import create_pool
from tests.helpers import new_order, new_user
from tests.helpers import lock_by_id


@pytest.fixture
async def ctx(migrated, broker):
    """What a worker's reconciliation actor gets: its own pool, the broker, the connectors."""
    c = Context(migrated, await create_pool(migrated, size_max=4), broker)
    yield c
    await c.close()


class Paid:
    """A pay-in paycell completed and posted at connector `psp` (as the charge step does)."""

    def __init__(self, user_id: str, order_id: str, amount_minor: int, currency: str, psp_reference: str):
        self.user_id, self.order_id = user_id, order_id
        self.amount_minor, self.currency, self.psp_reference = amount_minor, currency, psp_reference


async def paid(pool, psp: str, amount_minor: int, currency: str = "USD", *, settle: bool = True,
               state: str = "completed") -> Paid:
    """A pay-in at `psp`: settled and completed, or left in `state` (a live PSP state) unposted."""
    from paycell.store import ledger
    user = new_user("recon")
    ref = f"pi_{uuid.uuid4().hex[:20]}"
    async with pool.acquire() as conn, conn.transaction():
        order_id = await new_order(conn, user, "payin", amount_minor, currency)
        order = await lock_by_id(conn, order_id)
        await payments.move(conn, order, "psp_submitting", event="order.psp_submitting", psp=psp, attempt=1,
                            psp_reference=ref)
        if settle:
            await ledger.post_order(conn, order.user_id, order_id, "settle", system_slices=4)
            await payments.move(conn, order, "completed", event="order.posted", ledger_updated=True,
                                wallet_updated=True)
        elif state != "psp_submitting":
            await payments.move(conn, order, state, event=f"order.{state}")
    return Paid(user, order_id, amount_minor, currency, ref)


def stripe_txn(p: Paid, *, gross_minor: int | None = None, category: str = "charge", fee_minor: int | None = None,
               currency: str | None = None, at_s: float | None = None) -> stripe_report.BalanceTransaction:
    gross = p.amount_minor if gross_minor is None else gross_minor
    at_s = time.time() if at_s is None else at_s
    return stripe_report.BalanceTransaction(
        id=f"txn_{uuid.uuid4().hex[:16]}", created_s=at_s, available_on_s=at_s + 2 * 86_400,
        currency=currency or p.currency, gross_minor=gross,
        fee_minor=stripe_report.fee_minor("card", abs(gross)) if fee_minor is None else fee_minor,
        reporting_category=category, description="test", charge_id=f"ch_{uuid.uuid4().hex[:12]}",
        payment_intent_id=p.psp_reference, order_id=p.order_id)


def stripe_file(tmp_path, txns, *, day: datetime.date | None = None, name: str = "stripe.csv"):
    day = day or datetime.datetime.now(datetime.timezone.utc).date()
    _, body = stripe_report.itemized_csv(list(txns), day)
    path = tmp_path / name
    path.write_bytes(body)
    return path


@pytest.fixture
def since() -> datetime.datetime:
    """When the test began: its reconciliation period starts there, so that only its own
    settlements can be missing at the PSP."""
    return datetime.datetime.now(datetime.timezone.utc)


def window(since: datetime.datetime) -> tuple[datetime.datetime, datetime.datetime]:
    """The reconciliation period of a test: from its start to a minute from now."""
    return since, datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=60)
