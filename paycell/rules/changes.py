"""Changing what is in force: pushing and activating rule sets, creating lists, adding and
removing their values. The API (paycell.http.risk_rules) and the CLI (`paycell risk rules|lists`)
both come here, each inside a transaction it opened, so a refused change writes nothing.

A rule set is compiled against the lists that exist before anything is stored (lists are never
deleted and never change kind, so it stays valid); one with any problem is refused whole
(RuleSyntaxError or RuleSetInvalid, every problem with its line and column) and the one in force
stays. Beyond compile_rules, a list must hold what its field is: `ip in list:blocked_countries`
would never match (an IP is not a country code), so it is refused like an unknown list.
"""
from __future__ import annotations

import asyncpg
import msgspec
import structlog

from paycell.errors import Conflict, NotFound, RiskListsFull, RuleProblem, RuleSetInvalid, Unprocessable
from paycell.rules import ast, list_values
from paycell.rules.check import check_rules
from paycell.rules.parse import parse_rules
from paycell.store import risk_rules as store

log = structlog.get_logger("paycell.risk")

SOURCE_BYTES_MAX = 65_536  # the column's bound (migration 0014)
NOTE_CHARS_MAX = 500
WHO_CHARS_MAX = 100


class Pushed(msgspec.Struct, frozen=True):
    version: int
    created: bool    # False: the same text was stored before, as this version
    activated: bool  # put in force by this push (False when it already was, or not asked)


def check_note(note: str, field: str = "note") -> str:
    if len(note) > NOTE_CHARS_MAX:
        raise Unprocessable(f"{field} is longer than {NOTE_CHARS_MAX} characters", code="note_too_long", field=field)
    return note


def check_who(who: str) -> str:
    if not 0 < len(who) <= WHO_CHARS_MAX:
        raise ValueError(f"who must be 1..{WHO_CHARS_MAX} characters, got {len(who)}")
    return who


def check_source(source: str) -> None:
    if not source.strip():
        raise Unprocessable("source is empty: a rule set needs at least one rule or comment",
                            code="rules_empty", field="source")
    size = len(source.encode("utf-8"))
    if size > SOURCE_BYTES_MAX:
        raise Unprocessable(f"source is {size} bytes, more than {SOURCE_BYTES_MAX}", code="rules_too_large",
                            field="source")


# The kind of list a field's values belong in; a field not named here may not be tested against
# a named list at all (there is no list of currencies or connectors).
LIST_KIND_OF_FIELD = {"user": "user", "instrument": "instrument", "ip": "ip", "ip.country": "country",
                      "instrument.country": "country"}
_HOLDS = {"user": "user ids", "instrument": "instrument tokens", "ip": "IP addresses", "country": "country codes"}


async def compile_against_lists(conn: asyncpg.Connection, source: str) -> ast.RuleSet:
    """The compiled rule set, checked against the lists that exist and their kinds; raises what
    compile_rules raises, with every problem (the kinds' too) in one RuleSetInvalid."""
    check_source(source)
    kinds = await store.list_kinds(conn)
    rule_set = parse_rules(source)
    problems = check_rules(rule_set, frozenset(kinds)) + list_kind_problems(rule_set, kinds)
    if problems:
        raise RuleSetInvalid(sorted(problems, key=lambda p: (p.line, p.column)))
    return rule_set


def list_kind_problems(rule_set: ast.RuleSet, kinds: dict[str, str]) -> list[RuleProblem]:
    """`field in list:name` where the list holds another kind of value than the field."""
    problems: list[RuleProblem] = []

    def walk(node: ast.Condition) -> None:
        match node:
            case ast.And(operands=operands) | ast.Or(operands=operands):
                for operand in operands:
                    walk(operand)
            case ast.Not(operand=operand):
                walk(operand)
            case ast.Membership(operand=ast.Field(name=field), list_name=str(name)) if name in kinds:
                wanted = LIST_KIND_OF_FIELD.get(field)
                if wanted is None:
                    problems.append(RuleProblem(node.line, node.column,
                                                f"{field} cannot be tested against a named list: lists hold users, "
                                                "instruments, IPs or countries"))
                elif kinds[name] != wanted:
                    problems.append(RuleProblem(node.line, node.column,
                                                f"list:{name} holds {_HOLDS[kinds[name]]}, so {field} is never in it "
                                                f"(it needs a list of kind {wanted})"))

    for rule in rule_set.rules:
        walk(rule.condition)
    return problems


async def push(conn: asyncpg.Connection, source: str, *, note: str, activate: bool, by: str) -> Pushed:
    """Compile `source`, store it (once per text) and, if asked, put it in force."""
    check_who(by)
    check_note(note)
    await store.lock_config(conn)
    await compile_against_lists(conn, source)
    version, created = await store.insert_rule_set(conn, source=source, note=note, created_by=by)
    activated = bool(activate and await store.activate(conn, version, activated_by=by))
    log.info("risk.rule_set.pushed", version=version, created=created, activated=activated, by=by)
    return Pushed(version, created, activated)


async def activate(conn: asyncpg.Connection, version: int, *, by: str) -> bool:
    """Put stored `version` in force (a rollback when it is older; 0: back to the rule file);
    False when it already was.
    NotFound for an unknown version. A stored version compiled when it was pushed and lists are
    never deleted, so it still compiles: it is checked again anyway, because paycell's own
    fields may have changed since (an upgrade), and a rule set that no longer compiles must not
    be put in force."""
    check_who(by)
    await store.lock_config(conn)
    if version != 0:  # 0: the rule file, which each process compiles at start-up
        found = await store.rule_set(conn, version)
        if found is None:
            raise NotFound(f"no rule set version {version}")
        await compile_against_lists(conn, found["source"])
    activated = await store.activate(conn, version, activated_by=by)
    log.info("risk.rule_set.activated", version=version, activated=activated, by=by)
    return bool(activated)


async def create_list(conn: asyncpg.Connection, name: str, kind: str, *, by: str) -> tuple[asyncpg.Record, bool]:
    """(the list, created now); the same name with the same kind again is the list as it is,
    with another kind a 409 `list_exists`."""
    check_who(by)
    list_values.check_list_name(name)
    if kind not in list_values.KINDS:
        raise Unprocessable(f"kind must be one of {', '.join(list_values.KINDS)}", code="list_kind_invalid",
                            field="kind")
    await store.lock_config(conn)
    row, created = await store.create_list(conn, name=name, kind=kind, created_by=by)
    if row["kind"] != kind:
        raise Conflict(f"list {name} exists with kind {row['kind']}", code="list_exists", field="kind")
    if created:
        log.info("risk.list.created", list=name, kind=kind, by=by)
    return row, created


async def list_kind(conn: asyncpg.Connection, name: str) -> str:
    row = await store.get_list(conn, name) if list_values.LIST_NAME.fullmatch(name) else None
    if row is None:
        raise NotFound(f"no list named {name[:80]}")
    return row["kind"]


async def add_values(conn: asyncpg.Connection, name: str, values: list[str], *, note: str,
                     by: str, entries_max: int = 1_000_000) -> tuple[list[str], list[str]]:
    """Normalise and add `values` to list `name` (a value already live is fine); returns (every
    value normalised, without duplicates; those added now). RiskListsFull when the lists would hold
    more than `entries_max` live entries in all: the caller's transaction must then roll back."""
    check_who(by)
    check_note(note)
    kind = await list_kind(conn, name)
    normalised = list_values.normalise_all(kind, values)
    await store.lock_config(conn)
    added = await store.add_entries(conn, name, normalised, note=note, added_by=by)
    if added and (live := await store.live_entries(conn)) > entries_max:
        raise RiskListsFull(f"the risk lists would hold {live} entries, more than {entries_max} "
                            "(PAYCELL_RISK_LIST_ENTRIES_MAX): remove some first")
    log.info("risk.list.values_added", list=name, added=len(added), given=len(values), by=by)
    return normalised, added


async def remove_value(conn: asyncpg.Connection, name: str, value: str, *, by: str) -> asyncpg.Record:
    """Remove `value` from list `name` (again: the same answer); NotFound when it never held it."""
    check_who(by)
    kind = await list_kind(conn, name)
    normalised = list_values.normalise(kind, value)
    if normalised is None:
        raise NotFound(f"list {name} holds no {value[:80]!r}")
    await store.lock_config(conn)
    row = await store.remove_entry(conn, name, normalised, removed_by=by)
    if row is None:
        raise NotFound(f"list {name} holds no {value[:80]!r}")
    log.info("risk.list.value_removed", list=name, value=normalised, by=by)
    return row
