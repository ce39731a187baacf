"""Online and offline features agree: a synthetic history loaded into Postgres, scored payment by
payment through paycell/risk/history_pg.py, gives exactly the features the training computes
offline from the same payments (paycell/risk/features.py's `offline`)."""
from __future__ import annotations

import random
import uuid

import asyncpg

from paycell.risk import synthetic
from paycell.risk.features import offline
from paycell.risk.history_pg import online_features, wallet_of
from paycell.workflow import Order



def _refs(p: synthetic.Payment, prefix: str) -> tuple[str, str]:
    user = prefix + p.user_id
    if p.kind == "payin":
        return p.instrument, wallet_of(user)
    if p.kind == "payout":
        return wallet_of(user), p.instrument
    return wallet_of(user), wallet_of(prefix + p.counterparty_user_id)


async def _load(owner: asyncpg.Connection, payments: list[synthetic.Payment], prefix: str) -> dict[str, str]:
    """Insert the users and payment requests as the owner role; payment id -> its uuid."""
    users = {p.user_id: p.account_created_at for p in payments}
    users |= {p.counterparty_user_id: p.created_at for p in payments
              if p.counterparty_user_id and p.counterparty_user_id not in users}
    await owner.executemany("INSERT INTO app_user (user_id, registered_at) VALUES ($1, $2)",
                            [(prefix + u, at) for u, at in users.items()])
    ids = {p.payment_id: str(uuid.uuid4()) for p in payments}
    rows = []
    for p in payments:
        src, dst = _refs(p, prefix)
        failed = p.outcome == "declined"
        rows.append((ids[p.payment_id], prefix + p.user_id, p.payment_option, p.kind, src, dst, p.amount_minor,
                     p.currency, "failed" if failed else "succeeded", "card_declined" if failed else None,
                     p.created_at, p.ip, p.country))
    await owner.executemany(
        """INSERT INTO payment_request (payment_id, user_id, payment_option, kind, from_acct, to_acct, amount_minor,
                                        currency, status, failure_code, is_complete, created_at, updated_at,
                                        client_ip, client_country)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, true, $11, $11, $12::inet, $13)""", rows)
    return ids


def _order(p: synthetic.Payment, prefix: str, payment_id: str) -> Order:
    src, dst = _refs(p, prefix)
    return Order(payment_order_id=str(uuid.uuid4()), payment_id=payment_id, user_id=prefix + p.user_id, kind=p.kind,
                 payment_option=p.payment_option, from_acct=src, to_acct=dst, amount_minor=p.amount_minor,
                 currency=p.currency, payment_order_status="requested", ledger_updated=False, wallet_updated=False,
                 psp=None, psp_reference=None, attempt=0, created_at=p.created_at)


async def test_every_feature_of_every_sampled_payment_agrees(owner, pool):
    payments = list(synthetic.generate(users=300, days=7, seed=23))
    assert {p.pattern for p in payments if p.fraud} == set(synthetic.PATTERNS)
    prefix = f"feat{uuid.uuid4().hex[:8]}-"
    ids = await _load(owner, payments, prefix)
    expected = dict((p.payment_id, f) for p, f in offline(payments))
    rng = random.Random(5)
    sample = [p for p in payments if p.fraud] + rng.sample(payments, 250)
    async with pool.acquire() as conn:
        for p in sample:
            got = await online_features(conn, _order(p, prefix, ids[p.payment_id]), ip=p.ip, country=p.country,
                                        instrument_attached_at=p.instrument_attached_at)
            assert got == expected[p.payment_id], (p, got, expected[p.payment_id])
    # The sample exercised the features that matter: windows, declines, fan-in, unseen countries.
    feats = [expected[p.payment_id] for p in sample]
    for name in ("user_10m_count", "instrument_1h_declines_count", "user_received_24h_count",
                 "country_unseen_flag", "usual_known_flag", "instrument_new_flag", "ip_unseen_flag"):
        assert any(getattr(f, name) for f in feats), name
