"""The rule set and lists in force, cached per process and reloaded without a restart.

    rules = RulesInForce(settings.risk_reload_s)      # one per process (a worker's Context)
    in_force = await rules.get(conn)                  # per payment
    decision = await evaluate(in_force.rule_set, facts, velocity, in_force.lists)

`get` costs nothing (no I/O) within `reload_s` of its last check. After that it reads the one
counter row every change bumps (paycell.store.risk_rules); only when the counter moved does it
load the rule set in force and every list (one statement) and compile the rule set. With
reload_s = 0 every call reads the counter.

No rule set activated yet: the rule file of PAYCELL_RISK_RULES_FILE, else the shipped default
(paycell/rules/default.rules), is in force as version 0. A stored rule set that does not compile when loaded (it compiled when pushed; an upgrade of
paycell may have changed a field) must not stop the process: the last good rule set stays in
force, with the lists as they are now, and an error is logged with the version and its problems
(`InForce.rejected_version` names it until a good one is activated).
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import asyncpg
import msgspec
import structlog

from paycell.config import Settings
from paycell.errors import RuleSetInvalid
from paycell.rules import ast
from paycell.rules.check import compile_rules, default_rules_text
from paycell.store import risk_rules as store

log = structlog.get_logger("paycell.risk")

DEFAULT_VERSION = 0


def rules_file_text(settings: Settings) -> str:
    """The rule text in force while the database holds no rule set: PAYCELL_RISK_RULES_FILE, else
    the default file shipped in paycell/rules."""
    return Path(settings.risk_rules_file).read_text() if settings.risk_rules_file else default_rules_text()


class InForce(msgspec.Struct, frozen=True):
    version: int  # 0: the default file
    rule_set: ast.RuleSet
    lists: Mapping[str, frozenset[str]]
    config_version: int  # the counter this was loaded at
    rejected_version: int | None = None  # the version activated in the database that did not compile


class RulesInForce:
    """A per-process cache of what is in force (see the module docstring). Safe for any number of
    coroutines on one event loop: one refresh at a time, the others wait for it."""

    def __init__(self, reload_s: float, *, clock: Callable[[], float] = time.monotonic,
                 default_source: str | None = None):
        """`default_source`: the rule text in force (as version 0) while the database holds none;
        None is the shipped default file (rules_file_text reads PAYCELL_RISK_RULES_FILE)."""
        if reload_s < 0:
            raise ValueError(f"reload_s must not be negative, got {reload_s}")
        self.reload_s = reload_s
        self._default_source = default_rules_text() if default_source is None else default_source
        self._clock = clock
        self._current: InForce | None = None
        self._checked_at = float("-inf")
        self._lock = asyncio.Lock()
        self.reloads = 0  # how many times the rule set and lists were read (for tests and metrics)

    @property
    def current(self) -> InForce | None:
        """What the last `get` answered, without any check (None before the first)."""
        return self._current

    async def get(self, conn: asyncpg.Connection) -> InForce:
        current = self._current
        if current is not None and self._clock() - self._checked_at < self.reload_s:
            return current
        asked_at = self._clock()
        async with self._lock:
            if self._current is not None and self._checked_at >= asked_at and self.reload_s > 0:
                return self._current  # refreshed by another coroutine while this one waited
            return await self._refresh(conn)

    async def _refresh(self, conn: asyncpg.Connection) -> InForce:
        checked_at = self._clock()
        current = self._current
        if current is not None and await store.config_version(conn) == current.config_version:
            self._checked_at = checked_at
            return current
        loaded = await store.load(conn)
        self.reloads += 1
        self._current = self._build(loaded, current)
        self._checked_at = checked_at
        if current is None or self._current.version != current.version:
            log.info("risk.rules.in_force", version=self._current.version, config_version=loaded.config_version,
                     rules=len(self._current.rule_set.rules), lists=len(loaded.lists))
        return self._current

    def _build(self, loaded: store.Loaded, current: InForce | None) -> InForce:
        version = DEFAULT_VERSION if loaded.version is None else loaded.version
        if current is not None and current.version == version and current.rejected_version is None:
            # Only the lists moved. Lists are never deleted, so the rule set still compiles.
            return InForce(version, current.rule_set, loaded.lists, loaded.config_version)
        source = self._default_source if loaded.version is None else loaded.source
        try:
            rule_set = compile_rules(source, known_lists=loaded.lists.keys())
        except RuleSetInvalid as exc:
            log.error("risk.rules.rejected_on_load", version=version, config_version=loaded.config_version,
                      problems=[str(p) for p in exc.problems],
                      keeping=DEFAULT_VERSION if current is None else current.version)
            if current is None:
                if version == DEFAULT_VERSION:
                    raise  # the shipped file does not compile against the lists: nothing to fall back on
                # Nothing good in hand yet (the process just started): the rule file (version 0).
                fallback = self._build(store.Loaded(loaded.config_version, None, None, loaded.lists), None)
                return msgspec.structs.replace(fallback, rejected_version=version)
            # The last good rule set, with the lists as they are now (and any it names that vanished).
            lists = {**current.lists, **loaded.lists}
            return InForce(current.version, current.rule_set, lists, loaded.config_version, rejected_version=version)
        return InForce(version, rule_set, loaded.lists, loaded.config_version)
