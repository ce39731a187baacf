"""Hand the C allocator's free memory back to the operating system every few seconds.

Why: a worker's event loop reads every socket (Postgres, the PSPs) through asyncio's transports,
which allocate a 256 KiB buffer per read and shrink it to what arrived: ~800 such reads a second
per worker process. Its live Python heap stays flat (tracemalloc and memray agree: under 1 MiB of
live allocations in the loop's thread), but glibc keeps the freed space inside the loop thread's
arena, fragmented, and RSS creeps up with the payments served (~150 bytes a payment, measured by
bench/soak.py). `malloc_trim(0)` returns every whole free page of every arena (madvise), which
bounds that creep by what one interval allocates. Off the payment path: one call per
`PAYCELL_MALLOC_TRIM_INTERVAL_S` from a daemon thread, a few milliseconds each.

Only on glibc (musl and macOS have no malloc_trim: nothing is started there).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading

import structlog

log = structlog.get_logger("paycell.memory")

_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
_started_in_pid: int | None = None
_lock = threading.Lock()


def _libc_malloc_trim():
    """libc's malloc_trim, or None where there is none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def rss_bytes() -> int:
    """This process's resident set size."""
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * _PAGE_BYTES


def trim_once(trim=None) -> int:
    """Run malloc_trim(0) now; returns the RSS it released in bytes (0 where there is no malloc_trim)."""
    trim = trim or _libc_malloc_trim()
    if trim is None:
        return 0
    before = rss_bytes()
    trim(0)
    return max(0, before - rss_bytes())


def start_trimmer(interval_s: float) -> bool:
    """Start this process's trimming thread (once per process; a forked child starts its own).
    False when `interval_s` is 0 or the C library has no malloc_trim."""
    global _started_in_pid
    trim = _libc_malloc_trim()
    if interval_s <= 0 or trim is None:
        return False
    with _lock:
        if _started_in_pid == os.getpid():
            return True
        _started_in_pid = os.getpid()
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(interval_s):
            released = trim_once(trim)
            log.debug("memory.trimmed", rss_released_bytes=released)

    threading.Thread(target=run, name="paycell-malloc-trim", daemon=True).start()
    log.info("memory.trimmer_started", interval_s=interval_s)
    return True
