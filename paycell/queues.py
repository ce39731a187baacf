"""Inspecting Dramatiq's Redis queues, and the dead letters kept in Redis and in Postgres.

Dramatiq's Redis layout (dramatiq/brokers/redis/dispatch.lua): `<ns>:<queue>` is a list of
message ids with bodies in the hash `<ns>:<queue>.msgs`; delayed messages live in `<queue>.DQ`;
dead letters in the sorted set `<queue>.XQ` (scored by when) with bodies in `<queue>.XQ.msgs`.
Dramatiq has no API to list or replay dead letters, hence this module.
"""
from __future__ import annotations

import time

import dramatiq
import msgspec
import redis

from paycell.actors.broker import STEP_QUEUES

NAMESPACE = "dramatiq"


class QueueStats(msgspec.Struct):
    queue: str
    ready: int
    delayed: int
    dead: int


class DeadLetter(msgspec.Struct):
    redis_id: str
    queue: str
    actor: str
    order_id: str | None
    error: str
    age_s: int


def _queues(client: redis.Redis) -> list[str]:
    names = set(STEP_QUEUES.values())
    for key in client.scan_iter(match=f"{NAMESPACE}:*.msgs", count=500):
        name = key.decode().removeprefix(f"{NAMESPACE}:").removesuffix(".msgs")
        names.add(name.removesuffix(".XQ").removesuffix(".DQ"))
    return sorted(n for n in names if not n.startswith("__"))


def stats(client: redis.Redis) -> list[QueueStats]:
    return [QueueStats(q, client.llen(f"{NAMESPACE}:{q}"), client.llen(f"{NAMESPACE}:{q}.DQ"),
                       client.zcard(f"{NAMESPACE}:{q}.XQ")) for q in _queues(client)]


def dead_letters(client: redis.Redis) -> list[DeadLetter]:
    now_ms = time.time() * 1000
    found = []
    for queue in _queues(client):
        for key in (f"{NAMESPACE}:{queue}.XQ", f"{NAMESPACE}:{queue}.DQ.XQ"):
            for rid, score in client.zrange(key, 0, -1, withscores=True):
                raw = client.hget(f"{key}.msgs", rid)
                if raw is None:
                    continue
                msg = msgspec.json.decode(raw)
                args = msg.get("args") or []
                trace = (msg.get("options") or {}).get("traceback") or ""
                found.append(DeadLetter(rid.decode(), queue, msg.get("actor_name", "?"),
                                        args[0] if args and isinstance(args[0], str) else None,
                                        trace.strip().splitlines()[-1][:200] if trace else "",
                                        int((now_ms - score) / 1000)))
    return found


def replay(client: redis.Redis, broker: dramatiq.Broker, redis_id: str) -> bool:
    """Re-enqueue one dead letter as a fresh message and drop it from the DLQ. Safe because
    every step is idempotent and checks its order's state under the row lock."""
    for queue in _queues(client):
        for key in (f"{NAMESPACE}:{queue}.XQ", f"{NAMESPACE}:{queue}.DQ.XQ"):
            raw = client.hget(f"{key}.msgs", redis_id)
            if raw is None:
                continue
            msg = msgspec.json.decode(raw)
            broker.enqueue(dramatiq.Message(queue_name=queue, actor_name=msg["actor_name"],
                                            args=tuple(msg.get("args") or ()), kwargs=msg.get("kwargs") or {},
                                            options={}))
            client.zrem(key, redis_id)
            client.hdel(f"{key}.msgs", redis_id)
            return True
    return False
