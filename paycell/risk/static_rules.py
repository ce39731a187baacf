"""The rule set in force while none is stored in Postgres: a file, as version 0.

PAYCELL_RISK_RULES_FILE names it; unset, it is the default file shipped in paycell/rules. It is
compiled once per process with no named lists but the four block lists (empty until stored ones
replace them), and a file that does not compile stops the process at start-up with its problems.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import msgspec

from paycell.config import Settings
from paycell.rules import ast
from paycell.rules.check import BLOCK_LISTS, compile_rules, default_rules_text


class StaticInForce(msgspec.Struct, frozen=True):
    version: int
    rule_set: ast.RuleSet
    lists: Mapping[str, frozenset[str]]
    config_version: int


def rules_file_text(settings: Settings) -> str:
    """The text of the fallback rule file (PAYCELL_RISK_RULES_FILE, else the shipped default)."""
    return Path(settings.risk_rules_file).read_text() if settings.risk_rules_file else default_rules_text()


class StaticRules:
    """A RuleSource of one rule set that never changes."""

    def __init__(self, settings: Settings):
        lists = {name: frozenset() for name in BLOCK_LISTS}
        self._in_force = StaticInForce(version=0, rule_set=compile_rules(rules_file_text(settings), lists),
                                       lists=lists, config_version=0)

    async def get(self, conn) -> StaticInForce:
        return self._in_force
