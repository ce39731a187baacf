"""What one message costs on each broker: `send` (what the web and every step pay per message) and
the admission sampler's depth read.

    .venv/bin/python bench/brokers.py                          # Redis db 71, RabbitMQ at 127.0.0.1:5672
    .venv/bin/python bench/brokers.py --messages 5000 --threads 4

For each broker, on a queue nobody consumes: `--messages` sends of one `screen` message (an order
id only, as paycell sends), one thread, then the same number spread over `--threads` threads (the
web enqueues on ENQUEUE_THREADS = 4 threads, each with its own connection on RabbitMQ); then
`--reads` depth reads as the admission sampler does them. RabbitMQ runs with paycell's settings:
durable queues, persistent messages, a publisher confirm awaited per message. It runs on a vhost of
its own (`paycell_bench_<pid>`, made and deleted with rabbitmqctl); Redis on its own database,
flushed before and after. Nothing touches Postgres.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from paycell.actors.broker import build_broker, send  # noqa: E402
from paycell.config import load  # noqa: E402
from paycell.queues import open_queues  # noqa: E402
from tests import rabbitmq  # noqa: E402


def _timed_sends(broker, n: int) -> list[float]:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        send(broker, "screen", "bench-user", str(uuid.uuid4()))
        times.append(time.perf_counter() - t)
    return times


def _line(label: str, times: list[float], wall_s: float) -> str:
    q = statistics.quantiles(times, n=100)
    return (f"  {label:<28} {len(times) / wall_s:>9.0f} msg/s   p50 {q[49] * 1e3:6.3f} ms   "
            f"p99 {q[98] * 1e3:6.3f} ms")


def run(name: str, settings, messages: int, threads: int, reads: int) -> None:
    broker, queues = build_broker(settings), open_queues(settings)
    try:
        send(broker, "screen", "bench-user", "warm-up")  # connections and queue declarations out of the figures
        t = time.perf_counter()
        one = _timed_sends(broker, messages)
        print(f"{name}:")
        print(_line("send, 1 thread", one, time.perf_counter() - t))
        t = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            parts = list(pool.map(lambda _: _timed_sends(broker, messages // threads), range(threads)))
        print(_line(f"send, {threads} threads", [x for p in parts for x in p], time.perf_counter() - t))
        depth = queues.depth("payments")
        assert depth == 1 + messages + (messages // threads) * threads, depth
        times = []
        t = time.perf_counter()
        for _ in range(reads):
            r = time.perf_counter()
            queues.depth("payments")
            times.append(time.perf_counter() - r)
        print(_line("depth read", times, time.perf_counter() - t).replace("msg/s", "rd/s "))
    finally:
        queues.close()
        broker.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/71")
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--reads", type=int, default=1000)
    args = parser.parse_args()
    base = load({**os.environ, "PAYCELL_REDIS_URL": args.redis, "PAYCELL_BROKER_URL": ""})
    redis.Redis.from_url(args.redis).flushdb()
    try:
        run(f"Redis ({args.redis})", base, args.messages, args.threads, args.reads)
    finally:
        redis.Redis.from_url(args.redis).flushdb()
    reason = rabbitmq.unavailable(("127.0.0.1", 5672))
    if reason:
        print(f"RabbitMQ: skipped: {reason}")
        return
    with rabbitmq.own_vhost(("127.0.0.1", 5672), f"paycell_bench_{os.getpid()}") as url:
        run("RabbitMQ (127.0.0.1:5672, confirms)", msgspec.structs.replace(base, broker_url=url),
            args.messages, args.threads, args.reads)


if __name__ == "__main__":
    main()
