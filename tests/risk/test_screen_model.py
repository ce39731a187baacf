"""With a model promoted, the screen step scores every payment: the model's features are read in
the statement that locks the order (a screen still costs two statements), they are the features
online_features reads on its own, and the decision in the event log names the model's version and
its score."""
from __future__ import annotations

import uuid

from paycell.http.app import create_app
from paycell.risk import model_io
from paycell.risk.engine import SCORE_DIGITS
from paycell.risk.features import NAMES
from paycell.risk.history_pg import online_features
from paycell.risk.promote import store_and_decide
from tests.api.conftest import parked
from tests.api.support import payer, payin, post_payment
from tests.api.test_api_screen_round_trips import _order_ids, _screen_logged, _worker_context
from tests.helpers import assert_ledger_clean
from tests.risk.test_model_store import candidate_of, retire_promoted
from tests.helpers import read_by_id


async def _decision(pool, order_id: str) -> dict:
    return await pool.fetchval("""SELECT e.data FROM event e JOIN payment_order o ON o.payment_id = e.payment_id
                                   WHERE o.payment_order_id = $1 AND e.type = 'order.risk_checked'""",
                               uuid.UUID(order_id))


async def test_a_promoted_model_scores_from_the_locking_statement(aiohttp_client, migrated, pool, synthetic_data,
                                                                  synthetic_model):
    await retire_promoted(pool)
    candidate = candidate_of(synthetic_model, synthetic_data)
    promoted = await store_and_decide(pool, candidate, synthetic_data, migrated, trained_by="test")
    assert promoted.status == "promoted"
    api = await aiohttp_client(create_app(parked(migrated)))
    user = await payer(api, migrated, "scored")
    for amount in ("12.30", "40.00"):  # the second one has a history: a usual amount, an instrument used
        assert (await post_payment(api, migrated, user, payin(user, amount=amount))).status == 202
    ctx = await _worker_context(pool, migrated)
    compiled = model_io.loads(candidate.blob, feature_names=NAMES)[1]
    for order_id in await _order_ids(pool, user):
        async with pool.acquire() as conn:
            order = await read_by_id(conn, order_id)
            facts = await conn.fetchrow("""SELECT host(client_ip) AS ip, client_country FROM payment_request
                                            WHERE user_id = $1 AND payment_id = $2""", order.user_id, order.payment_id)
            alone = await online_features(conn, order, ip=facts["ip"], country=facts["client_country"],
                                          instrument_attached_at=await conn.fetchval(
                                              "SELECT max(created_at) FROM instrument WHERE user_id = $1", user))
        next_step, statements = await _screen_logged(pool, ctx, order_id)
        assert next_step == "charge"
        assert len(statements) == 2, statements  # lock-and-read (rules, features), then the move
        assert "ROW(" in statements[0] and "FOR UPDATE" in statements[0]
        decision = await _decision(pool, order_id)
        assert decision["verdict"] == "allow" and decision["model_version"] == promoted.version
        assert decision["score"] == f"{compiled.score(alone.row()):.{SCORE_DIGITS}f}"
    assert (alone.user_24h_count, alone.instrument_24h_count) == (1, 1)  # the second payment saw the first
    await retire_promoted(pool)
    await assert_ledger_clean(pool)
