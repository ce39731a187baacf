"""The statements that distribute a migrated paycell database on Citus, in an order Citus accepts.

Citus checks each table as it converts it: a reference table may only reference reference tables,
and a distributed table only tables of its own colocation group (on the distribution column) or
reference tables. So the reference tables go first, each after the tables it references; then each
colocation group, its first table (one nothing else in the group must precede) starting a new
colocation group and the others joining it (`colocate_with`), each after the tables it references.
A table that is already distributed (pg_dist_partition) is left alone: the plan can be re-run.
"""
from __future__ import annotations

import graphlib

import asyncpg

from paycell.store.distribution import DISTRIBUTED, FUNCTIONS, LOCAL, REFERENCE

_FOREIGN_KEYS = """
SELECT t.relname AS tbl, r.relname AS ref FROM pg_constraint c
  JOIN pg_class t ON t.oid = c.conrelid JOIN pg_class r ON r.oid = c.confrelid
 WHERE c.contype = 'f' AND t.relnamespace = 'public'::regnamespace AND t.oid <> r.oid"""
_DONE = "SELECT logicalrelid::regclass::text FROM pg_dist_partition"


class Step(tuple):
    """One statement: (sql, args)."""

    def __new__(cls, sql: str, *args: str):
        return super().__new__(cls, (sql, args))


def ordered(tables: frozenset[str], references: dict[str, set[str]]) -> list[str]:
    """`tables`, each after the ones of `tables` it references (alphabetical among equals)."""
    graph = {t: {r for r in references.get(t, set()) if r in tables} for t in sorted(tables)}
    sorter = graphlib.TopologicalSorter(graph)
    sorter.prepare()
    out: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        out.extend(ready)
        sorter.done(*ready)
    return out


def steps(references: dict[str, set[str]], done: set[str] = frozenset()) -> list[Step]:
    """The plan for a schema whose foreign keys are `references` (table -> tables it references)."""
    plan = [Step("SELECT create_reference_table($1)", t) for t in ordered(REFERENCE, references) if t not in done]
    for group, (column, tables) in DISTRIBUTED.items():
        order = ordered(tables, references)
        anchor = order[0]
        for t in order:
            if t in done:
                continue
            plan.append(Step("SELECT create_distributed_table($1, $2, colocate_with => $3)",
                             t, column, "none" if t == anchor else anchor))
    for signature, (argument, colocate_with) in FUNCTIONS.items():
        plan.append(Step("SELECT create_distributed_function($1, $2, colocate_with => $3)",
                         signature, argument, colocate_with))
    return plan


async def read(conn: asyncpg.Connection) -> tuple[dict[str, set[str]], set[str]]:
    """The schema's foreign keys (table -> referenced tables) and the tables Citus already holds."""
    references: dict[str, set[str]] = {}
    for r in await conn.fetch(_FOREIGN_KEYS):
        references.setdefault(r["tbl"], set()).add(r["ref"])
    done = {name.split(".")[-1].strip('"') for name in await conn.fetchval(f"SELECT array({_DONE})")} \
        if await conn.fetchval("SELECT to_regclass('pg_dist_partition') IS NOT NULL") else set()
    return references, done


def placed() -> set[str]:
    """Every table the layout names (the test that reads the catalog checks it names them all)."""
    return {t for _, (_, ts) in DISTRIBUTED.items() for t in ts} | REFERENCE | LOCAL
