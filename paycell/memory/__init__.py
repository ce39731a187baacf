"""Bounded memory per process (issue 14): what a long-running process does so that its memory
depends on its configuration, not on how many payments it has served. The bounds themselves live
with the structures they bound (each an LRU or a cap from settings); README "Memory" lists them."""
