"""The console's reads across users find their rows through an index, never by reading the whole
payment_request table: the BRIN index on created_at (migration 0025) serves the overview's chart
and the status listing, whose windows are the last hour and the last day."""
from __future__ import annotations

import json

import asyncpg
import pytest

from paycell.store import payments


@pytest.mark.parametrize("sql, args", [(payments.COUNTS_PER_MINUTE, (60,)),
                                       (payments.RECENT_ACROSS_USERS, (200, payments.STATUS_WINDOW_H, "failed"))])
async def test_the_console_reads_across_users_through_the_created_at_index(migrated, sql, args):
    # The test table is small: a sequential scan, or a scan of the whole (user_id, created_at) index,
    # would win on cost. In a transaction rolled back, that index is dropped and sequential scans are
    # forbidden, to see that a plan through the created_at index exists (without it only a scan of
    # the table would remain, as before migration 0025).
    conn = await asyncpg.connect(migrated.admin_database_url)
    transaction = conn.transaction()
    await transaction.start()
    try:
        await conn.execute("SET LOCAL lock_timeout = '5s'")
        await conn.execute("DROP INDEX payment_request_user_recent")
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = json.dumps(await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args))
    finally:
        await transaction.rollback()  # the dropped index comes back
        await conn.close()
    assert "payment_request_created_brin" in plan and "Seq Scan" not in plan, plan
