"""The apply actor's body (paycell.actors.apply_event.apply) run in this process against the real
database: a webhook and the `charge` step racing on one order post once; an event that arrives
before the step's own answer; events no order carries yet (unmatched, then matched once the
step records the reference, re-sent by the sweeper); an event naming another connector's order;
the operator's list. Messages go to a Redis database no worker listens on."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import msgspec
import pytest

from paycell.actors import context
from paycell.actors.apply_event import _lock_order, apply
from paycell.actors.broker import build_broker
from paycell.actors.charge import _record
from paycell.psp.base import PspResult, WebhookEvent
from paycell.store import inbox, payments
from paycell.sweeper import sweep_once
from tests.api.conftest import parked
from tests.helpers import assert_ledger_clean, new_order, new_user, postings_of
from tests.helpers import key_of, lock_by_id

PAYCELL = os.path.join(os.path.dirname(sys.executable), "paycell")
RACES = 15


@pytest.fixture
async def ctx(migrated, pool):
    settings = parked(migrated)
    broker = build_broker(settings)
    yield context.Context(settings, pool, broker)
    broker.close()


async def _order_at_psp(pool, *, psp: str = "test", amount_minor: int = 7_00, ref: str | None = None) -> str:
    """A pay-in order moved legitimately to psp_submitting on connector `psp`."""
    async with pool.acquire() as conn, conn.transaction():
        order_id = await new_order(conn, new_user(), "payin", amount_minor)
        order = await lock_by_id(conn, order_id)
        await payments.move(conn, order, "psp_submitting", event="order.psp_submitting", psp=psp, attempt=1)
        if ref:
            await payments.move(conn, order, "psp_pending", event="order.psp_pending", psp_reference=ref)
    return order_id


async def _stored(pool, event: WebhookEvent, connector: str = "test") -> str:
    async with pool.acquire() as conn, conn.transaction():
        await inbox.store(conn, connector, [event], msgspec.json.encode(event), retry_s=30)
    return event.event_id


def _paid(order_id: str | None, *, ref: str = "ch_race", amount_minor: int = 7_00) -> WebhookEvent:
    return WebhookEvent(event_id=f"evt_{uuid.uuid4().hex}", kind="outcome", type="charge.paid", order_id=order_id,
                        psp_reference=ref, result=PspResult(status="succeeded", psp_reference=ref),
                        amount_minor=amount_minor, currency="USD")


async def _event_row(pool, event_id: str):
    return await pool.fetchrow("SELECT result, applied_at, applied_order_id::text, apply_attempts, note FROM psp_event "
                               "WHERE connector = 'test' AND event_id = $1", event_id)


async def _state(pool, order_id: str) -> str:
    return await pool.fetchval("SELECT payment_order_status FROM payment_order WHERE payment_order_id = $1",
                               uuid.UUID(order_id))


async def test_a_webhook_and_the_charge_step_racing_on_one_order_post_once(ctx, pool):
    orders = [await _order_at_psp(pool) for _ in range(RACES)]
    events = [await _stored(pool, _paid(order_id)) for order_id in orders]
    succeeded = PspResult(status="succeeded", psp_reference="ch_race")
    keys = [await key_of(pool, order_id) for order_id in orders]
    await asyncio.gather(*(job for key, event_id in zip(keys, events) for job in (
        apply(ctx, "test", event_id), _record(ctx, *key, succeeded))))
    for order_id, event_id in zip(orders, events):
        assert await _state(pool, order_id) == "completed"
        assert await postings_of(pool, order_id) == ["payin_settle"]
        row = await _event_row(pool, event_id)
        assert row["applied_at"] and row["result"] in ("applied", "agrees") and row["applied_order_id"] == order_id
    await assert_ledger_clean(pool)


async def test_an_event_before_the_steps_own_answer_completes_the_order_and_the_answer_changes_nothing(ctx, pool):
    order_id = await _order_at_psp(pool)
    event_id = await _stored(pool, _paid(order_id))
    await apply(ctx, "test", event_id)
    assert await _state(pool, order_id) == "completed"
    assert (await _event_row(pool, event_id))["result"] == "applied"
    assert await _record(ctx, *await key_of(pool, order_id), PspResult(status="succeeded", psp_reference="ch_race")) \
        is None
    await apply(ctx, "test", event_id)  # a second message for it: already applied
    assert (await _event_row(pool, event_id))["apply_attempts"] == 1
    assert await postings_of(pool, order_id) == ["payin_settle"]
    await assert_ledger_clean(pool)


async def test_an_event_naming_its_order_is_stored_with_the_owner_and_applied_by_the_orders_key(ctx, pool):
    """The inbox keeps the owner of the order an event names by id (found in the statement that
    stores it): the apply actor locks the order by its key (user_id, order_id), no lookup of its
    own; an event naming it by the provider's reference alone has no owner stored and is found
    through payment_order (psp, psp_reference)."""
    by_id = await _order_at_psp(pool)
    by_ref = await _order_at_psp(pool, ref="ch_only_ref")
    user_of_id, user_of_ref = (await key_of(pool, by_id))[0], (await key_of(pool, by_ref))[0]
    named, referenced = await _stored(pool, _paid(by_id)), await _stored(pool, _paid(None, ref="ch_only_ref"))
    owners = dict(await pool.fetch("SELECT event_id, owner_id FROM psp_event WHERE event_id = ANY($1::text[])",
                                   [named, referenced]))
    assert owners == {named: user_of_id, referenced: None}
    statements: list[str] = []
    async with pool.acquire() as conn:
        with conn.query_logger(lambda logged: statements.append(logged.query)):
            async with conn.transaction():
                stored = await inbox.lock(conn, "test", named)
                await _lock_order(conn, "test", stored)
    assert [q for q in statements if "payment_order" in q and "FOR UPDATE" not in q] == []  # no owner lookup
    for event_id in (named, referenced):
        await apply(ctx, "test", event_id)
    assert await payments.state_of(pool, user_of_id, by_id) == "completed"
    assert await payments.state_of(pool, user_of_ref, by_ref) == "completed"
    assert [(await _event_row(pool, e))["applied_order_id"] for e in (named, referenced)] == [by_id, by_ref]
    await assert_ledger_clean(pool)


async def test_an_event_no_order_carries_yet_waits_and_applies_once_the_reference_is_recorded(ctx, pool, migrated):
    ref = f"ch_{uuid.uuid4().hex}"
    event_id = await _stored(pool, _paid(None, ref=ref))  # the provider does not echo the order id
    await apply(ctx, "test", event_id)
    row = await _event_row(pool, event_id)
    assert row["applied_at"] is None and row["result"] == "unmatched" and row["apply_attempts"] == 1

    order_id = await _order_at_psp(pool, ref=ref)  # the step records the provider's reference
    await pool.execute("UPDATE psp_event SET retry_at = now() - interval '1 second' WHERE event_id = $1", event_id)
    swept = await sweep_once(pool, ctx.broker, ctx.settings)
    assert swept.events >= 1
    assert await pool.fetchval("SELECT retry_at > now() FROM psp_event WHERE event_id = $1", event_id)
    await apply(ctx, "test", event_id)  # what the sweeper's message runs
    row = await _event_row(pool, event_id)
    assert row["result"] == "applied" and row["applied_order_id"] == order_id
    assert await _state(pool, order_id) == "completed"
    await assert_ledger_clean(pool)


async def test_an_event_naming_another_connectors_order_is_not_applied(ctx, pool):
    order_id = await _order_at_psp(pool, psp="othersim")
    event_id = await _stored(pool, _paid(order_id))
    await apply(ctx, "test", event_id)
    row = await _event_row(pool, event_id)
    assert row["applied_at"] is None and row["result"] == "mismatch" and "othersim" in row["note"]
    assert await _state(pool, order_id) == "psp_submitting"
    assert await postings_of(pool, order_id) == []


async def test_an_event_for_another_amount_is_a_contradiction_not_a_success(ctx, pool):
    order_id = await _order_at_psp(pool)
    event_id = await _stored(pool, _paid(order_id, amount_minor=9_00))
    await apply(ctx, "test", event_id)
    assert (await _event_row(pool, event_id))["result"] == "contradiction"
    assert await _state(pool, order_id) == "needs_attention"
    assert await postings_of(pool, order_id) == []
    await assert_ledger_clean(pool)


async def test_an_applied_event_is_final_and_never_deleted(pool):
    event_id = await _stored(pool, _paid(None, ref="ch_final"))
    await pool.execute("UPDATE psp_event SET applied_at = now(), result = 'ignored' WHERE event_id = $1", event_id)
    import asyncpg
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute("UPDATE psp_event SET result = 'applied' WHERE event_id = $1", event_id)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pool.execute("DELETE FROM psp_event WHERE event_id = $1", event_id)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):  # the app role may not rewrite the evidence
        await pool.execute("UPDATE psp_event SET raw_body = '' WHERE event_id = $1", event_id)


async def test_the_operator_lists_unapplied_events(ctx, pool):
    ref = f"ch_{uuid.uuid4().hex}"
    event_id = await _stored(pool, _paid(None, ref=ref))
    await apply(ctx, "test", event_id)
    out = subprocess.run([PAYCELL, "webhooks", "unapplied", "--limit", "10000"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    line = next(line for line in out.stdout.splitlines() if event_id in line)
    assert "unmatched" in line and ref in line and "attempts 1" in line
