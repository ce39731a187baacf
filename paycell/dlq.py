"""Dead letters for operators: list them (Postgres and Redis) and replay them.

Replaying reopens the order in the state its step left it (it went to needs_attention when the
retries ran out) and enqueues that step again (a `reverse` message: its reversal, and the order
the policy was reversing): safe, since every step checks state under the
order's row lock and the PSP and the ledger are idempotent by the order id.

Redis is read and written with redis-py's blocking client on a worker thread (asyncio.to_thread),
so the web process's console can call these without stalling its event loop.
"""
from __future__ import annotations

import asyncio

import asyncpg
import dramatiq
import msgspec
import redis

from paycell import queues, workflow
from paycell.actors.broker import send
from paycell.config import Settings
from paycell.reversals import outcome as reversal_outcome
from paycell.store import dead_letters, payments


class Listed(msgspec.Struct):
    id: str          # the Postgres dead_letter_id, or `redis:<id>` for one only Redis holds
    actor: str
    order_id: str | None
    error: str
    age_s: int
    in_redis: bool


async def list_all(pool: asyncpg.Pool, client: redis.Redis) -> list[Listed]:
    in_redis = {d.redis_id: d for d in await asyncio.to_thread(queues.dead_letters, client)}
    async with pool.acquire() as conn:
        rows = await dead_letters.pending(conn, limit=1_000)
    listed, seen = [], set()
    for r in rows:
        rid = (r["message"].get("options") or {}).get("redis_message_id")
        seen.add(rid)
        listed.append(Listed(str(r["dead_letter_id"]), r["actor_name"], r["payment_order_id"], r["error"],
                             int(r["age"].total_seconds()), rid in in_redis))
    for rid, d in in_redis.items():
        if rid not in seen:
            listed.append(Listed(f"redis:{rid}", d.actor, d.order_id, d.error, d.age_s, True))
    return listed


async def replay(pool: asyncpg.Pool, client: redis.Redis, broker: dramatiq.Broker, settings: Settings,
                 ident: str, *, by: str | None = None) -> bool:
    """Replay one dead letter by its listed id; `by` (an operator) is named in the order's
    `order.reopened` event. A dead `reverse` message reopens its reversal too."""
    if ident.startswith("redis:"):
        return await asyncio.to_thread(queues.replay, client, broker, ident.removeprefix("redis:"))
    if not ident.isdigit() or len(ident) > 18:  # dead_letter_id is a bigint
        return False
    reason = f"dead letter {ident} replayed" + (f" by {by}" if by else "")
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT dead_letter_id, payment_order_id::text AS order_id, message FROM dead_letter "
            "WHERE dead_letter_id = $1 AND replayed_at IS NULL FOR UPDATE", int(ident))
        if row is None:
            return False
        await dead_letters.mark_replayed(conn, row["dead_letter_id"])
        state = None
        args = row["message"].get("args") or []
        reversal = tuple(args) if row["message"].get("actor_name") == "reverse" and len(args) == 2 else None
        if reversal is not None and not await reversal_outcome.reopen(conn, settings, *reversal, reason=reason):
            reversal = None
        if row["order_id"]:
            state = await payments.reopen(conn, row["order_id"], lease_s=settings.psp_lease_s, reason=reason)
    rid = (row["message"].get("options") or {}).get("redis_message_id")
    await asyncio.to_thread(_drop_and_send, client, broker, rid, state and workflow.step_for(state), row["order_id"],
                            reversal)
    return True


def _drop_and_send(client: redis.Redis, broker: dramatiq.Broker, redis_id: str | None, step: str | None,
                   order_id: str | None, reversal: tuple | None = None) -> None:
    """Drop the replayed message's copy from Redis's dead letters, then send its order's step (and
    its reversal's, for a dead `reverse`)."""
    for key in (f"{queues.NAMESPACE}:{q}{suffix}" for q in set(queues.STEP_QUEUES.values())
                for suffix in (".XQ", ".DQ.XQ")):
        if redis_id and client.zrem(key, redis_id):
            client.hdel(f"{key}.msgs", redis_id)
    if step is not None:
        send(broker, step, order_id)
    if reversal is not None:
        send(broker, "reverse", *reversal)
