"""Dead letters for operators: list them (Postgres and the broker, Redis or RabbitMQ) and replay them.

Replaying reopens the order in the state its step left it (it went to needs_attention when the
retries ran out) and enqueues that step again: safe, since every step checks state under the
order's row lock and the PSP and the ledger are idempotent by the order id.

The broker is read and written with its blocking client (redis-py or pika) on a worker thread
(asyncio.to_thread), so a web process can call these without stalling its event loop.
"""
from __future__ import annotations

import asyncio

import asyncpg
import dramatiq
import msgspec

from paycell import workflow
from paycell.actors.broker import send
from paycell.config import Settings
from paycell.queues import Queues
from paycell.reversals import outcome as reversal_outcome
from paycell.store import dead_letters, payments


class Listed(msgspec.Struct):
    id: str          # the Postgres dead_letter_id, or `<broker>:<id>` for one only the broker holds
    actor: str
    order_id: str | None
    error: str
    age_s: int
    in_broker: bool


async def list_all(pool: asyncpg.Pool, queues: Queues) -> list[Listed]:
    in_broker = {d.broker_id: d for d in await asyncio.to_thread(queues.dead_letters)}
    async with pool.acquire() as conn:
        rows = await dead_letters.pending(conn, limit=1_000)
    listed, seen = [], set()
    for r in rows:
        rid = queues.broker_id(r["message"])
        seen.add(rid)
        listed.append(Listed(str(r["dead_letter_id"]), r["actor_name"], r["payment_order_id"], r["error"],
                             int(r["age"].total_seconds()), rid in in_broker))
    for rid, d in in_broker.items():
        if rid not in seen:
            listed.append(Listed(f"{queues.name}:{rid}", d.actor, d.order_id, d.error, d.age_s, True))
    return listed


async def replay(pool: asyncpg.Pool, queues: Queues, broker: dramatiq.Broker, settings: Settings,
                 ident: str, *, by: str | None = None) -> bool:
    """Replay one dead letter by its listed id; `by` (an operator) is named in the order's
    `order.reopened` event. A dead `reverse` message reopens its reversal too."""
    if ident.startswith(f"{queues.name}:"):
        return await asyncio.to_thread(queues.replay, broker, ident.removeprefix(f"{queues.name}:"))
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
        state = key = None
        args = row["message"].get("args") or []
        reversal = tuple(args) if row["message"].get("actor_name") == "reverse" and len(args) == 2 else None
        if reversal is not None and not await reversal_outcome.reopen(conn, settings, *reversal, reason=reason):
            reversal = None
        if row["order_id"]:
            # The order's key: from the message (user id, order id), or, for a dead letter recorded
            # before the key carried the user, its owner looked up (payments.order_key).
            ids = args if args and args[-1] == row["order_id"] else [row["order_id"]]
            key = await payments.order_key(conn, ids)
            state = key and await payments.reopen(conn, *key, lease_s=settings.psp_lease_s, reason=reason)
    await asyncio.to_thread(_drop_and_send, queues, broker, queues.broker_id(row["message"]),
                            state and workflow.step_for(state), key, reversal)
    return True


def _drop_and_send(queues: Queues, broker: dramatiq.Broker, broker_id: str | None, step: str | None,
                   key: tuple[str, str] | None, reversal: tuple | None = None) -> None:
    """Drop the replayed message's copy from the broker's dead letters, then send its order's step
    to its key, (user id, order id) (and its reversal's, for a dead `reverse`)."""
    if broker_id:
        queues.forget(broker_id)
    if step is not None and key is not None:
        send(broker, step, *key)
    if reversal is not None:
        send(broker, "reverse", *reversal)
