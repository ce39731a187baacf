"""The platform's own payments as training data: real orders (moved the way the pipeline moves
them) read back as labelled Payment structs."""
from __future__ import annotations

import datetime
import uuid

import asyncpg
import msgspec
import pytest

from paycell import postings
from paycell.risk import history, retrain, train
from paycell.risk.synthetic import generate
from paycell.store import instruments, payments
from tests.helpers import assert_ledger_clean, new_order, new_user, post_transfer, settle_payin
from tests.helpers import lock_by_id


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
            order = await lock_by_id(conn, returned)
            await postings.return_payment(conn, order, system_slices=slices)
            await payments.move(conn, order, "returned", event="order.returned", failure_code="R10")
        # 2. A pay-in the PSP declined.
        async with conn.transaction():
            declined = await new_order(conn, alice, "payin", 7_00, instrument=card)
            order = await lock_by_id(conn, declined)
            await payments.move(conn, order, "psp_submitting", event="order.psp_submitting", psp="test", attempt=1)
            await payments.move(conn, order, "failed", event="order.failed", failure_code="card_declined")
        # 3. A pay-out an operator declined in review (before any connector): fraud, not a PSP decline.
        async with conn.transaction():
            reviewed = await new_order(conn, alice, "payout", 30_00, instrument=bank, option="bank_account")
            order = await lock_by_id(conn, reviewed)
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
    assert (r.fraud, r.pattern, r.outcome) == (True, "returned", "other")  # returned: not completed
    assert (r.ip, r.country) == ("203.0.113.7", "DE")
    assert r.account_created_at == registered_at and r.instrument_attached_at == attached["created_at"]

    d = by_id[ids["declined"]]
    assert (d.outcome, d.fraud, d.pattern, d.ip, d.country) == ("declined", False, None, None, None)

    v = by_id[ids["reviewed"]]
    assert (v.kind, v.instrument, v.payment_option) == ("payout", bank, "bank_account")
    assert (v.outcome, v.fraud, v.pattern) == ("other", True, "review_declined")  # failed, not by the PSP

    f = by_id[ids["funded"]]
    assert (f.outcome, f.fraud, f.pattern) == ("succeeded", False, None)

    (t,) = [p for p in ours if p.kind == "transfer"]
    assert (t.instrument, t.counterparty_user_id, t.payment_option, t.instrument_attached_at) == (None, bob, "wallet",
                                                                                                    None)
    assert (t.outcome, t.fraud) == ("succeeded", False)

    # PAYCELL_RISK_TRAIN_PAYMENTS_MAX: a window with more payments keeps only its newest.
    async with pool.acquire() as conn:
        newest = await history.load_payments(conn, since, until, statement_timeout_ms=60_000, payments_max=2)
    assert newest == found[-2:] and len(found) > 2
    await assert_ledger_clean(pool)


# A synthetic history written as real rows, in a time range no other test uses (2001).
HISTORY_START = datetime.datetime(2001, 2, 1, tzinfo=datetime.UTC)
HISTORY_USERS, HISTORY_DAYS = 800, 30


async def _write_history(admin, generated: list, tag: str) -> None:
    """The synthetic payments as app_user, instrument, payment_request and payment_order rows,
    each order moved along the state table the way the pipeline would leave it: succeeded ->
    completed (after psp_submitting for a pay-in or pay-out), declined -> failed at the PSP, and a
    succeeded fraud -> failed `review_declined` (an operator caught it). A declined fraud stays a
    PSP decline: history cannot know it was fraud."""
    def user(u: str) -> str:
        return f"{tag}-{u}"

    users: dict[str, datetime.datetime] = {}
    attached: dict[tuple[str, str], tuple[str, datetime.datetime]] = {}
    for p in generated:
        users[user(p.user_id)] = p.account_created_at
        if p.instrument is not None:
            attached[(user(p.user_id), f"{tag}-{p.instrument}")] = (p.payment_option, p.instrument_attached_at)
    await admin.execute("INSERT INTO app_user (user_id, registered_at) SELECT * FROM unnest($1::text[], $2::timestamptz[])",
                        list(users), list(users.values()))
    await admin.execute(
        """INSERT INTO instrument (user_id, instrument_id, connector, payment_option, provider_token, created_at)
           SELECT u, gen_random_uuid(), 'test', o, t, c FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
                  AS x(u, t, o, c)""",
        [k[0] for k in attached], [k[1] for k in attached], [v[0] for v in attached.values()],
        [v[1] for v in attached.values()])
    rows = []
    for p in generated:
        wallet = f"wallet:{user(p.user_id)}"
        token = f"{tag}-{p.instrument}"
        from_acct, to_acct = {"payin": (token, wallet), "payout": (wallet, token),
                              "transfer": (wallet, f"wallet:{user(p.counterparty_user_id or '')}")}[p.kind]
        rows.append((uuid.uuid4(), uuid.uuid4(), user(p.user_id), p.payment_option, p.kind, from_acct, to_acct,
                     p.amount_minor, p.currency, p.created_at, p.ip, p.country))
    columns = list(zip(*rows))
    await admin.execute(
        """WITH r AS (
               INSERT INTO payment_request (payment_id, user_id, payment_option, kind, from_acct, to_acct, amount_minor,
                                            currency, created_at, client_ip, client_country)
               SELECT pid, u, opt, k, fa, ta, a, c, at, ip::inet, cc
                 FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bigint[],
                             $9::text[], $10::timestamptz[], $11::text[], $12::text[])
                      AS x(pid, u, opt, k, fa, ta, a, c, at, ip, cc)
               RETURNING *)
           INSERT INTO payment_order (payment_order_id, payment_id, user_id, kind, from_acct, to_acct, amount_minor,
                                      currency, payment_order_status, deadline_at, payment_option, created_at)
           SELECT oid, r.payment_id, r.user_id, r.kind, r.from_acct, r.to_acct, r.amount_minor, r.currency, 'requested',
                  r.created_at + interval '1 day', r.payment_option, r.created_at
             FROM r JOIN unnest($1::uuid[], $2::uuid[]) AS x(oid, pid) ON x.pid = r.payment_id""",
        *columns[:2], *columns[2:])
    order = {i: row[0] for i, row in enumerate(rows)}
    psp_side = [order[i] for i, p in enumerate(generated)
                if p.kind != "transfer" and not (p.fraud and p.outcome == "succeeded")]
    declined = [order[i] for i, p in enumerate(generated) if p.outcome == "declined" and p.kind != "transfer"]
    # No PSP carries a transfer: one the generator "declined" failed in paycell (no funds).
    unfunded = [order[i] for i, p in enumerate(generated) if p.outcome == "declined" and p.kind == "transfer"]
    completed = [order[i] for i, p in enumerate(generated) if p.outcome == "succeeded" and not p.fraud]
    reviewed = [order[i] for i, p in enumerate(generated) if p.outcome == "succeeded" and p.fraud]
    move = "UPDATE payment_order SET payment_order_status = $2{} WHERE payment_order_id = ANY($1::uuid[])"
    await admin.execute(move.format(", psp = 'test', attempt = 1"), psp_side, "psp_submitting")
    await admin.execute(move.format(", failure_code = 'card_declined'"), declined, "failed")
    await admin.execute(move.format(""), completed, "completed")
    await admin.execute(move.format(", failure_code = 'insufficient_funds'"), unfunded, "failed")
    await admin.execute(move.format(", failure_code = 'review_declined'"), reviewed, "failed")


async def test_training_on_history_reads_what_the_synthetic_payments_were(pool, settings):
    generated = list(generate(users=HISTORY_USERS, days=HISTORY_DAYS, seed=11, start=HISTORY_START))
    since, until = HISTORY_START - datetime.timedelta(days=1), HISTORY_START + datetime.timedelta(days=HISTORY_DAYS + 1)
    admin = await asyncpg.connect(settings.admin_database_url)
    try:
        async with admin.transaction():  # an earlier run's rows in this range: ours to replace
            await admin.execute("DELETE FROM payment_order WHERE created_at >= $1 AND created_at < $2", since, until)
            await admin.execute("DELETE FROM payment_request WHERE created_at >= $1 AND created_at < $2", since, until)
            await _write_history(admin, generated, tag=f"h{uuid.uuid4().hex[:8]}")
    finally:
        await admin.close()

    async with pool.acquire() as conn:
        loaded = await history.load_payments(conn, since, until, statement_timeout_ms=60_000)
    assert len(loaded) == len(generated)
    # The same features, payment for payment (ties in created_at may come in another order; a
    # feature never reads a payment of the same instant, so the rows match as a multiset).
    ours = train.build_dataset(loaded, holdout_share=0.2)
    # What the rows say: a transfer the generator "declined" failed in paycell (no funds) and a fraud
    # that "succeeded" was declined in review: neither completed nor declined by a PSP.
    as_written = [msgspec.structs.replace(p, outcome="other")
                  if (p.kind == "transfer" and p.outcome == "declined") or (p.fraud and p.outcome == "succeeded")
                  else p for p in generated]
    theirs = train.build_dataset(as_written, holdout_share=0.2)
    assert sorted(map(tuple, ours.x.tolist())) == sorted(map(tuple, theirs.x.tolist()))
    assert int(ours.y.sum()) == sum(p.fraud and p.outcome == "succeeded" for p in generated)
    assert sum(p.outcome == "declined" for p in loaded) == sum(p.outcome == "declined" for p in as_written)
    assert {p.pattern for p in loaded} == {None, "review_declined"}

    decision, candidate = await retrain.train_history(pool, settings, trained_by="test", now=until)
    assert candidate.source == "history"
    assert candidate.source_detail == {"window_days": settings.risk_train_window_days, "payments": len(generated)}
    assert candidate.counts["train_frauds"] + candidate.counts["holdout_frauds"] == int(ours.y.sum())
    row = await pool.fetchrow("SELECT status, source, window_from, window_to, holdout_from, metrics FROM risk_model "
                              "WHERE version = $1", decision.version)
    assert row["status"] == decision.status and row["source"] == "history"
    # The window starts with the first payment (the platform is younger than 90 days here).
    assert (row["window_from"], row["window_to"]) == (generated[0].created_at, until)
    assert row["metrics"]["roc_auc"] == pytest.approx(candidate.metrics.roc_auc)
    assert row["holdout_from"] == row["window_from"] + (until - row["window_from"]) * 0.8
