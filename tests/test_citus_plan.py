"""The statements `paycell citus distribute` runs (paycell/citus/plan.py), read off the migrated
schema: every placed table converted exactly once, each after what it references, each colocation
group anchored once. Needs no Citus; tests/test_citus_cluster.py applies them on one."""
from __future__ import annotations

import pytest

from paycell.citus import plan
from paycell.citus.cluster import node_url
from paycell.store.distribution import DISTRIBUTED, FUNCTIONS, LOCAL, REFERENCE


async def _plan(pool):
    async with pool.acquire() as conn:
        references, _ = await plan.read(conn)
    return references, plan.steps(references)  # the whole plan, whatever a Citus suite already did


async def test_every_table_but_the_local_ones_is_converted_once(pool):
    _, steps = await _plan(pool)
    converted = [args[0] for sql, args in steps if "_table(" in sql]
    assert len(converted) == len(set(converted))
    assert set(converted) == plan.placed() - LOCAL
    assert {args[0] for sql, args in steps if "create_reference_table" in sql} == REFERENCE
    functions = [args for sql, args in steps if "create_distributed_function" in sql]
    assert [a[0] for a in functions] == list(FUNCTIONS)


async def test_each_table_comes_after_the_tables_it_references(pool):
    references, steps = await _plan(pool)
    position = {args[0]: i for i, (sql, args) in enumerate(steps) if "_table(" in sql}
    for table, refs in references.items():
        for ref in refs - LOCAL:
            assert position[ref] < position[table], f"{table} references {ref}, converted later"
    # a reference table never waits for a distributed one (Citus would refuse the foreign key)
    last_reference = max(position[t] for t in REFERENCE)
    assert all(position[t] > last_reference for t in plan.placed() - REFERENCE - LOCAL)


async def test_a_group_is_anchored_once_and_the_rest_colocate_with_its_anchor(pool):
    _, steps = await _plan(pool)
    for group, (column, tables) in DISTRIBUTED.items():
        mine = [args for sql, args in steps if "create_distributed_table" in sql and args[0] in tables]
        assert {a[1] for a in mine} == {column}
        anchors = [a[0] for a in mine if a[2] == "none"]
        assert len(anchors) == 1, group
        assert {a[2] for a in mine if a[0] != anchors[0]} <= {anchors[0]}


def test_the_plan_can_be_re_run_and_skips_what_is_done():
    references = {"payment_order": {"payment_request"}}
    again = plan.steps(references, done=plan.placed() - LOCAL)
    assert all("_table(" not in sql for sql, _ in again)


def test_a_worker_is_the_admin_url_on_another_host():
    url = "postgresql://admin:s3cret@db.internal:5432/paycell"
    assert node_url(url, "10.0.0.7:6432") == "postgresql://admin:s3cret@10.0.0.7:6432/paycell"
    assert node_url("postgresql://127.0.0.1:5433/x", "w1:5434") == "postgresql://w1:5434/x"
    for bad in ("w1", "w1:", ":5434", "w1:port"):
        with pytest.raises(ValueError):
            node_url(url, bad)
