"""Queries of reconciliation (migration 0021): runs and their reports, settlement files and lines,
breaks. Owners are the reserved ids `recon:<connector>` / `recon:internal` (never a user's)."""
from __future__ import annotations

import datetime
import uuid

import asyncpg
import msgspec

STAGE_COLUMNS = ("line_no", "category", "psp_reference", "order_ref", "amount_minor", "currency", "fee_minor",
                 "booked_at")
RECENT_RUNS_MAX = 1_000

CREATE_STAGE = """
CREATE TEMP TABLE recon_stage (
    line_no integer NOT NULL, category text NOT NULL, psp_reference text, order_ref text,
    amount_minor bigint NOT NULL, currency text NOT NULL, fee_minor bigint NOT NULL, booked_at timestamptz
) ON COMMIT DROP"""


async def raise_statement_timeout(conn, timeout_ms: int) -> None:
    """This transaction's statements may run `timeout_ms` (a settlement file's COPY and classification)."""
    await conn.execute(f"SET LOCAL statement_timeout = {int(timeout_ms)}")


def owner_of(connector: str | None) -> str:
    return f"recon:{connector or 'internal'}"


class Run(msgspec.Struct, kw_only=True):
    owner_id: str
    run_id: str
    kind: str
    connector: str | None
    file_sha256: str | None
    period_start: datetime.datetime | None
    period_end: datetime.datetime | None
    started_at: datetime.datetime
    finished_at: datetime.datetime | None
    lines: int
    counts: dict
    auto_fixed: int
    queued: int
    totals: dict


_RUN = ("owner_id, run_id::text, kind, connector, encode(file_sha256, 'hex') AS file_sha256, period_start, "
        "period_end, started_at, finished_at, lines, counts, auto_fixed, queued, totals")


class Break(msgspec.Struct, kw_only=True):
    owner_id: str
    break_id: str
    kind: str
    subject_key: str
    run_id: str
    payment_order_id: str | None
    evidence: dict
    disposition: str
    fix: str | None
    transaction_id: int | None
    review_id: str | None
    created_at: datetime.datetime


_BREAK = ("owner_id, break_id::text, kind, subject_key, run_id::text, payment_order_id::text, evidence, "
          "disposition, fix, transaction_id, review_id::text, created_at")


async def start_run(conn, *, owner: str, kind: str, connector: str | None, sha256: bytes | None = None,
                    period: tuple[datetime.datetime, datetime.datetime] | None = None) -> str:
    run_id = str(uuid.uuid4())
    await conn.execute(
        """INSERT INTO recon_run (owner_id, run_id, kind, connector, file_sha256, period_start, period_end)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        owner, run_id, kind, connector, sha256, period and period[0], period and period[1])
    return run_id


async def finish_run(conn, owner: str, run_id: str, *, lines: int | None = None, totals: dict | None = None) -> None:
    """Count the run's breaks per kind and disposition into its report and close it."""
    await conn.execute(
        """UPDATE recon_run r SET finished_at = now(), lines = coalesce($3, r.lines), totals = coalesce($4, r.totals),
                  counts = coalesce((SELECT jsonb_object_agg(kind, n) FROM (
                                        SELECT kind, count(*) AS n FROM recon_break
                                         WHERE owner_id = $1 AND run_id = $2 GROUP BY kind) k), '{}'::jsonb),
                  auto_fixed = (SELECT count(*) FROM recon_break
                                 WHERE owner_id = $1 AND run_id = $2 AND disposition = 'fixed'),
                  queued = (SELECT count(*) FROM recon_break
                             WHERE owner_id = $1 AND run_id = $2 AND disposition = 'queued')
            WHERE owner_id = $1 AND run_id = $2""", owner, run_id, lines, totals)


async def get_run(conn, owner: str, run_id: str) -> Run | None:
    row = await conn.fetchrow(f"SELECT {_RUN} FROM recon_run WHERE owner_id = $1 AND run_id = $2", owner,
                              uuid.UUID(run_id))
    return Run(**dict(row.items())) if row else None


async def set_period(conn, owner: str, run_id: str, period: tuple[datetime.datetime, datetime.datetime]) -> None:
    await conn.execute("UPDATE recon_run SET period_start = $3, period_end = $4 WHERE owner_id = $1 AND run_id = $2",
                       owner, run_id, period[0], period[1])


async def mark_order_posted(conn, user_id: str, order_id: str) -> None:
    """Set a completed order's ledger and wallet flags (the posting exists: posted_not_marked)."""
    await conn.execute("""UPDATE payment_order SET ledger_updated = true, wallet_updated = true, updated_at = now()
                           WHERE user_id = $1 AND payment_order_id = $2""", user_id, order_id)


async def transaction_of(conn, user_id: str, idempotency_key: str) -> int | None:
    """The ledger transaction of `user_id` under `idempotency_key` (a key is unique per user)."""
    return await conn.fetchval(
        "SELECT transaction_id FROM ledger_transaction WHERE user_id = $1 AND idempotency_key = $2", user_id,
        idempotency_key)


async def find_run(conn, run_id: str) -> Run | None:
    row = await conn.fetchrow(f"SELECT {_RUN} FROM recon_run WHERE run_id = $1 LIMIT 1", uuid.UUID(run_id))
    return Run(**dict(row.items())) if row else None


async def recent_runs(conn, *, limit: int, kind: str | None = None, connector: str | None = None) -> list[Run]:
    rows = await conn.fetch(
        f"""SELECT {_RUN} FROM recon_run
             WHERE ($2::text IS NULL OR kind = $2) AND ($3::text IS NULL OR connector = $3)
             ORDER BY started_at DESC, run_id LIMIT $1""", min(limit, RECENT_RUNS_MAX), kind, connector)
    return [Run(**dict(r.items())) for r in rows]


async def file_run(conn, owner: str, sha256: bytes) -> str | None:
    """The run that ingested this file, when it was ingested before."""
    return await conn.fetchval("SELECT run_id::text FROM recon_file WHERE owner_id = $1 AND file_sha256 = $2",
                               owner, sha256)


async def insert_file(conn, *, owner: str, connector: str, sha256: bytes, run_id: str, size_bytes: int,
                      lines: int) -> None:
    await conn.execute(
        """INSERT INTO recon_file (owner_id, file_sha256, connector, run_id, size_bytes, lines)
           VALUES ($1, $2, $3, $4, $5, $6)""", owner, sha256, connector, run_id, size_bytes, lines)


async def stage(conn, records) -> None:
    """Create this transaction's staging table and COPY `records` (Line tuples, an iterator) into it."""
    await conn.execute(CREATE_STAGE)
    await conn.copy_records_to_table("recon_stage", records=records, columns=STAGE_COLUMNS)
    await conn.execute("ANALYZE recon_stage")  # autovacuum never sees a temp table: plan with its real size


async def classify_into_lines(conn, *, owner: str, sha256: bytes, sql: str, args: list, connector: str) -> None:
    """Store every staged line with its classification (`sql`: paycell.reconcile.matching)."""
    await conn.execute(
        f"""INSERT INTO recon_line (owner_id, file_sha256, line_no, category, psp_reference, order_ref,
                                    payment_order_id, amount_minor, currency, fee_minor, booked_at, outcome)
            SELECT ${len(args) + 3}, ${len(args) + 4}, s.line_no, s.category, s.psp_reference, s.order_ref,
                   c.payment_order_id, s.amount_minor, s.currency, s.fee_minor, s.booked_at, c.outcome
              FROM recon_stage s JOIN ({sql}) c USING (line_no)""",
        connector, owner, *args, owner, sha256)


async def classify_counts(conn, *, owner: str, sql: str, args: list, connector: str) -> dict[str, int]:
    """What `sql` would make of the staged lines: outcome -> lines (a dry run writes nothing)."""
    rows = await conn.fetch(f"SELECT outcome, count(*) AS n FROM ({sql}) c GROUP BY outcome ORDER BY outcome",
                            connector, owner, *args)
    return {r["outcome"]: r["n"] for r in rows}


async def staged_period(conn) -> tuple[datetime.datetime, datetime.datetime] | None:
    """The UTC days the staged lines were booked on: [first day 00:00, last day + 1 00:00)."""
    row = await conn.fetchrow("""SELECT date_trunc('day', min(booked_at) AT TIME ZONE 'UTC') AS a,
                                        date_trunc('day', max(booked_at) AT TIME ZONE 'UTC') AS b FROM recon_stage""")
    if row["a"] is None:
        return None
    utc = datetime.timezone.utc
    return row["a"].replace(tzinfo=utc), row["b"].replace(tzinfo=utc) + datetime.timedelta(days=1)


async def line_breaks(conn, *, owner: str, sha256: bytes, run_id: str, outcomes: tuple[str, ...]) -> int:
    """Open one break per classified line whose outcome is a catalogued kind (once per line)."""
    status = await conn.execute(
        """INSERT INTO recon_break (owner_id, break_id, kind, subject_key, run_id, payment_order_id, evidence)
           SELECT l.owner_id, gen_random_uuid(), l.outcome, 'line:' || encode(l.file_sha256, 'hex') || ':' || l.line_no,
                  $3, l.payment_order_id,
                  jsonb_build_object('file_sha256', encode(l.file_sha256, 'hex'), 'line_no', l.line_no,
                                     'category', l.category, 'psp_reference', l.psp_reference,
                                     'order_ref', l.order_ref, 'amount_minor', l.amount_minor,
                                     'currency', l.currency, 'fee_minor', l.fee_minor, 'booked_at', l.booked_at,
                                     'order', (SELECT jsonb_build_object('user_id', o.user_id, 'kind', o.kind,
                                                  'amount_minor', o.amount_minor, 'currency', o.currency,
                                                  'status', o.payment_order_status, 'psp', o.psp,
                                                  'psp_reference', o.psp_reference,
                                                  'failure_code', o.failure_code)
                                                 FROM payment_order o WHERE o.payment_order_id = l.payment_order_id))
             FROM recon_line l
            WHERE l.owner_id = $1 AND l.file_sha256 = $2 AND l.outcome = ANY($4::text[])
           ON CONFLICT ON CONSTRAINT recon_break_once DO NOTHING""",
        owner, sha256, run_id, list(outcomes))
    return int(status.split()[-1])


async def missing_at_psp(conn, *, owner: str, connector: str, run_id: str,
                         period: tuple[datetime.datetime, datetime.datetime]) -> int:
    """Open a break for each order of `connector` settled in `period` that no line of any of its
    files carries (once per order)."""
    status = await conn.execute(
        """INSERT INTO recon_break (owner_id, break_id, kind, subject_key, run_id, payment_order_id, evidence)
           SELECT $1, gen_random_uuid(), 'missing_psp', 'order:' || o.payment_order_id, $3, o.payment_order_id,
                  jsonb_build_object('user_id', o.user_id, 'kind', o.kind, 'amount_minor', o.amount_minor,
                                     'currency', o.currency, 'status', o.payment_order_status,
                                     'psp_reference', o.psp_reference, 'settled_at', t.created_at,
                                     'period_start', $4::timestamptz, 'period_end', $5::timestamptz)
             FROM ledger_transaction t JOIN payment_order o USING (user_id, payment_order_id)
            WHERE t.kind IN ('payin_settle', 'payout_settle') AND t.created_at >= $4 AND t.created_at < $5
              AND o.psp = $2
              AND NOT EXISTS (SELECT 1 FROM recon_line l
                               WHERE l.payment_order_id = o.payment_order_id AND l.owner_id = $1)
           ON CONFLICT ON CONSTRAINT recon_break_once DO NOTHING""",
        owner, connector, run_id, period[0], period[1])
    return int(status.split()[-1])


async def file_totals(conn, owner: str, sha256: bytes) -> dict:
    """Per currency: lines, lines matched, their amounts and fees (the run report's totals)."""
    rows = await conn.fetch(
        """SELECT currency, count(*) AS lines, count(*) FILTER (WHERE outcome = 'matched') AS matched,
                  coalesce(sum(amount_minor) FILTER (WHERE outcome = 'matched'), 0)::bigint AS matched_minor,
                  coalesce(sum(fee_minor) FILTER (WHERE outcome = 'matched'), 0)::bigint AS fees_minor
             FROM recon_line WHERE owner_id = $1 AND file_sha256 = $2 GROUP BY currency ORDER BY currency""",
        owner, sha256)
    return {r["currency"]: {"lines": r["lines"], "matched": r["matched"], "matched_minor": r["matched_minor"],
                            "fees_minor": r["fees_minor"]} for r in rows}


async def insert_break(conn, *, owner: str, kind: str, subject_key: str, run_id: str, order_id: str | None,
                       evidence: dict) -> bool:
    """Open a break once per (owner, kind, subject); False when it was found before."""
    status = await conn.execute(
        """INSERT INTO recon_break (owner_id, break_id, kind, subject_key, run_id, payment_order_id, evidence)
           VALUES ($1, gen_random_uuid(), $2, $3, $4, $5, $6)
           ON CONFLICT ON CONSTRAINT recon_break_once DO NOTHING""",
        owner, kind, subject_key, run_id, order_id, evidence)
    return status.endswith(" 1")


async def pending(conn, owner: str, run_id: str, *, limit: int) -> list[Break]:
    """The run's breaks nothing was done about yet."""
    rows = await conn.fetch(f"""SELECT {_BREAK} FROM recon_break
                                 WHERE owner_id = $1 AND run_id = $2 AND disposition = 'found'
                                 ORDER BY created_at, break_id LIMIT $3""", owner, uuid.UUID(run_id), limit)
    return [Break(**dict(r.items())) for r in rows]


async def pending_older(conn, *, older_than_s: float, limit: int) -> list[Break]:
    """Breaks of any run still `found` after `older_than_s` (index recon_break_pending)."""
    rows = await conn.fetch(f"""SELECT {_BREAK} FROM recon_break
                                 WHERE disposition = 'found' AND created_at < now() - make_interval(secs => $1)
                                 ORDER BY created_at LIMIT $2""", float(older_than_s), limit)
    return [Break(**dict(r.items())) for r in rows]


async def lock_break(conn, owner: str, break_id: str) -> Break | None:
    row = await conn.fetchrow(f"SELECT {_BREAK} FROM recon_break WHERE owner_id = $1 AND break_id = $2 FOR UPDATE",
                              owner, uuid.UUID(break_id))
    return Break(**dict(row.items())) if row else None


async def settle_break(conn, owner: str, break_id: str, *, disposition: str, fix: str | None = None,
                       transaction_id: int | None = None, review_id: str | None = None) -> None:
    await conn.execute(
        """UPDATE recon_break SET disposition = $3, fix = $4, transaction_id = $5, review_id = $6, settled_at = now()
            WHERE owner_id = $1 AND break_id = $2 AND disposition = 'found'""",
        owner, uuid.UUID(break_id), disposition, fix, transaction_id, review_id and uuid.UUID(review_id))


async def breaks_of_run(conn, owner: str, run_id: str, *, limit: int) -> list[Break]:
    rows = await conn.fetch(f"""SELECT {_BREAK} FROM recon_break WHERE owner_id = $1 AND run_id = $2
                                 ORDER BY created_at, break_id LIMIT $3""", owner, uuid.UUID(run_id), limit)
    return [Break(**dict(r.items())) for r in rows]


async def open_review(conn, *, owner: str, subject_key: str, kind: str, evidence: dict,
                      expires_at: datetime.datetime) -> str:
    """The review item of a break, opened once per subject (review_item_one_per_subject)."""
    review_id = await conn.fetchval(
        """INSERT INTO review_item (user_id, review_id, kind, reasons, evidence, expires_at, subject_key)
           VALUES ($1, $2, 'reconciliation', $3, $4, $5, $6)
           ON CONFLICT ON CONSTRAINT review_item_one_per_subject DO NOTHING
           RETURNING review_id::text""", owner, uuid.uuid4(), [kind], evidence, expires_at, subject_key)
    if review_id is None:
        review_id = await conn.fetchval(
            "SELECT review_id::text FROM review_item WHERE user_id = $1 AND subject_key = $2", owner, subject_key)
    return review_id


async def post_fees(conn: asyncpg.Connection, owner: str, sha256: bytes) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM post_settlement_fees($1, $2)", owner, sha256)


async def post_release(conn: asyncpg.Connection, user_id: str, order_id: str) -> int:
    row = await conn.fetchrow("SELECT * FROM post_recon_release($1::text, $2::uuid)", user_id, order_id)
    return row["transaction_id"]
