"""The platform's own payments as training data: real orders (moved the way the pipeline moves
them) read back as labelled Payment structs."""
from __future__ import annotations

import datetime
import uuid

import asyncpg

from paycell import postings
from paycell.risk import history
from paycell.store import instruments, payments
from tests.helpers import assert_ledger_clean, new_order, new_user, post_transfer, settle_payin


async def _payment_id(conn, order_id: str) -> str:
    return str(await conn.fetchval("SELECT payment_id FROM payment_order WHERE payment_order_id = $1",
                                   uuid.UUID(order_id)))


async def test_orders_become_labelled_payments(pool, settings):
    slices = settings.system_account_slices
    since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
    alice, bob = new_user("alice"), new_user("bob")
    card, bank = f"tok_card_{uuid.uuid4().hex[:8]}", f"tok_bank_{uuid.uuid4().hex[:8]}"
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO app_user (user_id) VALUES ($1), ($2)", alice, bob)
        registered_at = await conn.fetchval("SELECT registered_at FROM app_user WHERE user_id = $1", alice)
        attached, _ = await instruments.attach(conn, alice, connector="test", payment_option="card",
                                               provider_token=card)
        await instruments.attach(conn, alice, connector="test", payment_option="bank_account", provider_token=bank)

        # 1. A pay-in settled, then returned by the provider: fraud.
        async with conn.transaction():
            returned = await new_order(conn, alice, "payin", 50_00, instrument=card)
            await settle_payin(conn, returned, slices=slices)
        async with conn.transaction():
            order = await payments.lock_order(conn, returned)
            await postings.return_payment(conn, order, system_slices=slices)
            await payments.move(conn, order, "returned", event="order.returned", failure_code="R10")
        # 2. A pay-in the PSP declined.
        async with conn.transaction():
            declined = await new_order(conn, alice, "payin", 7_00, instrument=card)
            order = await payments.lock_order(conn, declined)
            await payments.move(conn, order, "psp_submitting", event="order.psp_submitting", psp="test", attempt=1)
            await payments.move(conn, order, "failed", event="order.failed", failure_code="card_declined")
        # 3. A pay-out an operator declined in review (before any connector): fraud, not a PSP decline.
        async with conn.transaction():
            reviewed = await new_order(conn, alice, "payout", 30_00, instrument=bank, option="bank_account")
            order = await payments.lock_order(conn, reviewed)
            await payments.move(conn, order, "failed", event="order.failed", failure_code="review_declined")
        # 4. A pay-in that succeeded, and a transfer from it to Bob.
        async with conn.transaction():
            funded = await new_order(conn, alice, "payin", 20_00, instrument=card)
            await settle_payin(conn, funded, slices=slices)
        ids = {name: await _payment_id(conn, o) for name, o in
               (("returned", returned), ("declined", declined), ("reviewed", reviewed), ("funded", funded))}
    await post_transfer(pool, alice, bob, 10_00)

    # Where the request came from is written by the web's edge only: set it as the owner would.
    admin = await asyncpg.connect(settings.admin_database_url)
    try:
        await admin.execute("UPDATE payment_request SET client_ip = '203.0.113.7', client_country = 'DE' "
                            "WHERE user_id = $1 AND payment_id = $2", alice, uuid.UUID(ids["returned"]))
    finally:
        await admin.close()

    until = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1)
    progress = []
    async with pool.acquire() as conn:
        found = await history.load_payments(conn, since, until, statement_timeout_ms=60_000, progress=progress.append)
    ours = [p for p in found if p.user_id == alice]
    assert [p.created_at for p in found] == sorted(p.created_at for p in found)
    by_id = {p.payment_id: p for p in ours}
    assert set(ids.values()) <= set(by_id) and len(ours) == 5

    r = by_id[ids["returned"]]
    assert (r.kind, r.amount_minor, r.currency, r.payment_option, r.instrument) == ("payin", 50_00, "USD", "card", card)
    assert (r.fraud, r.pattern, r.outcome) == (True, "returned", "succeeded")
    assert (r.ip, r.country) == ("203.0.113.7", "DE")
    assert r.account_created_at == registered_at and r.instrument_attached_at == attached["created_at"]

    d = by_id[ids["declined"]]
    assert (d.outcome, d.fraud, d.pattern, d.ip, d.country) == ("declined", False, None, "", "")

    v = by_id[ids["reviewed"]]
    assert (v.kind, v.instrument, v.payment_option) == ("payout", bank, "bank_account")
    assert (v.outcome, v.fraud, v.pattern) == ("succeeded", True, "review_declined")

    f = by_id[ids["funded"]]
    assert (f.outcome, f.fraud, f.pattern) == ("succeeded", False, None)

    (t,) = [p for p in ours if p.kind == "transfer"]
    assert (t.instrument, t.counterparty_user_id, t.payment_option, t.instrument_attached_at) == (None, bob, "wallet",
                                                                                                    None)
    assert (t.outcome, t.fraud) == ("succeeded", False)
    await assert_ledger_clean(pool)
