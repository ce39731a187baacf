"""The scaling curve (issue 12): `bench/e2e.py` with 1, 2 and 4 worker processes and 1 and 2 web
processes, one run per configuration, back to back, and a table of completed payments/s and CPU per
payment (worker, web, Postgres, Redis) for each.

    .venv/bin/python bench/curve.py                       # 20 s of load per phase, every configuration
    .venv/bin/python bench/curve.py --duration 10 --workers 1 2 --webs 1

Each run is a whole e2e bench (its own database and Redis db, processes started and stopped); only
phase A's closed loop (64 clients) is used here. Figures move with whatever else runs on the
machine: the table prints the CPU-seconds others used during each run, and the load average.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable


def _number(pattern: str, text: str) -> float | None:
    m = re.search(pattern, text, re.MULTILINE)
    return float(m.group(1)) if m else None


def run(workers: int, webs: int, duration_s: float, extra: list[str]) -> dict:
    argv = [PYTHON, str(HERE / "e2e.py"), "--cold-accounts", "--rules", "none", "--duration", str(duration_s),
            "--processes", str(workers), "--web-processes", str(webs), *extra]
    started = time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True)
    text = out.stdout + out.stderr
    if out.returncode != 0:
        raise SystemExit(f"e2e failed ({workers} workers, {webs} web):\n{text[-3000:]}")
    per = {name: _number(rf"^\s+{re.escape(name)}\s+[\d.]+ s\s+([\d.]+) ms/payment", text)
           for name in ("worker", "web", "postgres (bench db backends)", "redis-server")}
    return {"workers": workers, "webs": webs,
            "completed_per_s": _number(r"^completed payments/s \(phase A\)\s+(\d+)", text),
            "sum_ms": _number(r"sum of the bench processes\s+[\d.]+ s\s+([\d.]+) ms/payment", text),
            "others_s": _number(r"others on the machine meanwhile: ([\d.]+) CPU-s", text),
            "ok": "ledger check" in text and ": OK" in text, "took_s": time.monotonic() - started, **per}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--webs", type=int, nargs="+", default=[1, 2])
    args, extra = parser.parse_known_args()
    rows = []
    for webs in args.webs:
        for workers in args.workers:
            print(f"running: {workers} worker process(es), {webs} web process(es), load average "
                  f"{os.getloadavg()[0]:.1f} ...", flush=True)
            r = run(workers, webs, args.duration, extra)
            print(f"  {r['completed_per_s']:.0f} completed/s, {r['sum_ms']} ms CPU/payment, ledger "
                  f"{'OK' if r['ok'] else 'NOT OK'} ({r['took_s']:.0f} s)", flush=True)
            rows.append(r)
    print()
    print("| workers | web | completed/s | worker ms | web ms | Postgres ms | Redis ms | all ms/payment | "
          "others CPU-s | ledger |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workers']} | {r['webs']} | {r['completed_per_s']:.0f} | {r['worker']} | {r['web']} | "
              f"{r['postgres (bench db backends)']} | {r['redis-server']} | {r['sum_ms']} | {r['others_s']} | "
              f"{'OK' if r['ok'] else 'NOT OK'} |")
    print(f"\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
