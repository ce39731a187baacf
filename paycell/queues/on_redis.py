"""Dramatiq's queues and dead letters on Redis, read from its own structures.

Dramatiq's Redis layout (dramatiq/brokers/redis/dispatch.lua): `<ns>:<queue>` is a list of
message ids with bodies in the hash `<ns>:<queue>.msgs`; delayed messages live in `<queue>.DQ`;
dead letters in the sorted set `<queue>.XQ` (scored by when) with bodies in `<queue>.XQ.msgs`.
"""
from __future__ import annotations

import time

import dramatiq
import msgspec
import redis

from paycell.actors.broker import STEP_QUEUES
from paycell.config import Settings
from paycell.queues import DeadLetter, QueueStats, listed_id
from paycell.tls.client import redis_options

NAMESPACE = "dramatiq"


class RedisQueues:
    name = "redis"

    def __init__(self, client: redis.Redis):
        self.client = client

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisQueues:
        return cls(redis.Redis.from_url(settings.redis_url, **redis_options(settings.redis_url, settings)))

    def _queues(self) -> list[str]:
        names = set(STEP_QUEUES.values())
        for key in self.client.scan_iter(match=f"{NAMESPACE}:*.msgs", count=500):
            name = key.decode().removeprefix(f"{NAMESPACE}:").removesuffix(".msgs")
            names.add(name.removesuffix(".XQ").removesuffix(".DQ"))
        return sorted(n for n in names if not n.startswith("__"))

    def _dead_keys(self, queues=None) -> list[tuple[str, str]]:
        return [(q, f"{NAMESPACE}:{q}{suffix}") for q in (queues or self._queues()) for suffix in (".XQ", ".DQ.XQ")]

    def stats(self) -> list[QueueStats]:
        c = self.client
        return [QueueStats(q, c.llen(f"{NAMESPACE}:{q}"), c.llen(f"{NAMESPACE}:{q}.DQ"),
                           c.zcard(f"{NAMESPACE}:{q}.XQ")) for q in self._queues()]

    def depth(self, queue: str) -> int:
        return self.client.llen(f"{NAMESPACE}:{queue}")

    def dead_letters(self) -> list[DeadLetter]:
        now_ms = time.time() * 1000
        found = []
        for queue, key in self._dead_keys():
            for rid, score in self.client.zrange(key, 0, -1, withscores=True):
                raw = self.client.hget(f"{key}.msgs", rid)
                if raw is None:
                    continue
                msg = msgspec.json.decode(raw)
                args = msg.get("args") or []
                trace = (msg.get("options") or {}).get("traceback") or ""
                found.append(DeadLetter(rid.decode(), queue, msg.get("actor_name", "?"),
                                        listed_id(msg.get("actor_name", "?"), args),
                                        trace.strip().splitlines()[-1][:200] if trace else "",
                                        int((now_ms - score) / 1000)))
        return found

    def broker_id(self, message: dict) -> str | None:
        return (message.get("options") or {}).get("redis_message_id")

    def replay(self, broker: dramatiq.Broker, broker_id: str) -> bool:
        for queue, key in self._dead_keys():
            raw = self.client.hget(f"{key}.msgs", broker_id)
            if raw is None:
                continue
            msg = msgspec.json.decode(raw)
            broker.enqueue(dramatiq.Message(queue_name=queue, actor_name=msg["actor_name"],
                                            args=tuple(msg.get("args") or ()), kwargs=msg.get("kwargs") or {},
                                            options={}))
            self._drop(key, broker_id)
            return True
        return False

    def forget(self, broker_id: str) -> bool:
        return any([self._drop(key, broker_id) for _, key in self._dead_keys(set(STEP_QUEUES.values()))])

    def _drop(self, key: str, broker_id: str) -> bool:
        if self.client.zrem(key, broker_id):
            self.client.hdel(f"{key}.msgs", broker_id)
            return True
        return False

    def ping(self) -> None:
        self.client.ping()

    def close(self) -> None:
        self.client.close()
