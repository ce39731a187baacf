"""The allocator's free memory goes back to the OS (paycell/memory/trim.py)."""
from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from paycell.config import SettingsError, load
from paycell.memory import trim

pytestmark = pytest.mark.skipif(trim._libc_malloc_trim() is None, reason="no malloc_trim in this C library")

# Free holes between live blocks: free() cannot give them back (only the top of a heap), malloc_trim can.
FRAGMENTED = """
from paycell.memory import trim
blocks, pins = [], []
for _ in range(300):
    blocks.append(bytearray(100_000))
    pins.append(bytearray(1_000))
before = trim.rss_bytes()
del blocks
freed_by_free = before - trim.rss_bytes()
print(freed_by_free, trim.trim_once())
"""


def test_malloc_trim_hands_back_free_memory_that_free_keeps():
    out = subprocess.run([sys.executable, "-c", FRAGMENTED], capture_output=True, text=True, check=True)
    freed_by_free, released = map(int, out.stdout.split())
    assert freed_by_free < 5_000_000  # the holes stay resident after free()
    assert released > 20_000_000      # of the ~30 MB freed


def test_the_trimmer_starts_once_per_process_and_not_when_turned_off():
    assert trim.start_trimmer(0) is False
    assert trim.start_trimmer(3_600) is True
    assert trim.start_trimmer(3_600) is True
    assert [t.name for t in threading.enumerate()].count("paycell-malloc-trim") == 1


def test_a_negative_interval_is_refused():
    with pytest.raises(SettingsError, match="PAYCELL_MALLOC_TRIM_INTERVAL_S"):
        load(malloc_trim_interval_s=-1)
    assert load().malloc_trim_interval_s == 30.0
