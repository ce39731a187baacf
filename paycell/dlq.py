"""Dead letters for operators: list them (Postgres and the broker, Redis or RabbitMQ) and replay them.

Replaying reopens the order in the state its step left it (it went to needs_attention when the
retries ran out) and enqueues that step again: safe, since every step checks state under the
order's row lock and the PSP and the ledger are idempotent by the order id.
"""
from __future__ import annotations

import asyncpg
import dramatiq
import msgspec

from paycell import workflow
from paycell.actors.broker import send
from paycell.config import Settings
from paycell.queues import Queues
from paycell.store import dead_letters, payments


class Listed(msgspec.Struct):
    id: str          # the Postgres dead_letter_id, or `<broker>:<id>` for one only the broker holds
    actor: str
    order_id: str | None
    error: str
    age_s: int
    in_broker: bool


async def list_all(pool: asyncpg.Pool, queues: Queues) -> list[Listed]:
    in_broker = {d.broker_id: d for d in queues.dead_letters()}
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
                 ident: str) -> bool:
    """Replay one dead letter by its listed id."""
    if ident.startswith(f"{queues.name}:"):
        return queues.replay(broker, ident.removeprefix(f"{queues.name}:"))
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT dead_letter_id, payment_order_id::text AS order_id, message FROM dead_letter "
            "WHERE dead_letter_id = $1 AND replayed_at IS NULL FOR UPDATE", int(ident))
        if row is None:
            return False
        await dead_letters.mark_replayed(conn, row["dead_letter_id"])
        state = None
        if row["order_id"]:
            state = await payments.reopen(conn, row["order_id"], lease_s=settings.psp_lease_s,
                                          reason=f"dead letter {ident} replayed")
    rid = queues.broker_id(row["message"])
    if rid:
        queues.forget(rid)
    if state is not None:
        send(broker, workflow.step_for(state), row["order_id"])
    return True
