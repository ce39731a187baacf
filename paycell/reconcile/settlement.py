"""Nightly settlement reconciliation: one provider report in, every line classified, fees posted,
safe breaks fixed, the rest queued, a run report kept.

    1. The file is hashed (SHA-256, streaming) and refused past its size limit before anything else.
       A file ingested before (same owner, same hash) returns its first run's report: re-running a
       night's file changes nothing.
    2. In ONE transaction: the file is parsed row by row (paycell/reconcile/<format>.py) and COPYed
       into a temp staging table, classified against payment_order by the rule set's statement
       (paycell/reconcile/matching.py) into recon_line, and a break is opened for each line whose
       outcome is a catalogued kind and for each order settled in the file's period that no line of
       the connector carries (missing_psp). A malformed file fails anywhere in this transaction and
       leaves nothing behind; two runners ingesting the same file meet on recon_file's key.
    3. The provider's fees of the matched lines are posted (post_settlement_fees: one transaction
       per currency, keyed by the file).
    4. Breaks are fixed or queued (paycell/reconcile/fixes.py), the run report is closed.

A dry run does steps 1-2 in a transaction it rolls back and returns what the rule set would match.
"""
from __future__ import annotations

import datetime
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import asyncpg
import msgspec
import structlog

from paycell.actors.context import Context
from paycell.config import Settings
from paycell.errors import SettlementFileRejected, UnknownConnector
from paycell.reconcile import adyen_settlement, catalogue, fixes, matching, paypal_stl, stripe_itemized
from paycell.reconcile.formats import FILE_BYTES_MAX, TOO_LARGE, Line
from paycell.store import reconcile as store

log = structlog.get_logger("paycell.reconcile.settlement")

PARSERS: dict[str, Callable[[IO[str]], Iterator[Line]]] = {
    "stripe": stripe_itemized.parse,
    "adyen": adyen_settlement.parse,
    "paypal": paypal_stl.parse,
}
HASH_CHUNK_BYTES = 1 << 20
BREAK_OUTCOMES = tuple(o for o in catalogue.SETTLEMENT_OUTCOMES if o not in ("matched", "not_a_payment", "missing_psp"))


class DryRun(msgspec.Struct, kw_only=True):
    connector: str
    rules: str
    lines: int
    outcomes: dict[str, int]


class Ingested(msgspec.Struct, kw_only=True):
    run: store.Run
    replayed: bool  # the file had been ingested before: this is its first run's report


def parser_for(connector: str) -> Callable[[IO[str]], Iterator[Line]]:
    try:
        return PARSERS[connector]
    except KeyError:
        raise UnknownConnector(f"no settlement report format for connector {connector!r} "
                               f"(known: {', '.join(sorted(PARSERS))})") from None


def file_digest(path: Path, *, bytes_max: int) -> tuple[bytes, int]:
    """(SHA-256, size) of the file, read in bounded chunks; refused past `bytes_max`."""
    size = os.stat(path).st_size
    if size > bytes_max:
        raise SettlementFileRejected(f"the file has {size} bytes, more than the limit of {bytes_max}", code=TOO_LARGE)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.digest(), size


class _Counted:
    """The parser's lines, counted as COPY consumes them."""

    def __init__(self, lines: Iterator[Line]):
        self.lines = lines
        self.n = 0

    def __iter__(self):
        for line in self.lines:
            self.n += 1
            yield line


async def dry_run(pool, settings: Settings, connector: str, path: Path, rules: matching.RuleSet, *,
                  bytes_max: int = FILE_BYTES_MAX) -> DryRun:
    """What `rules` would make of the file's lines, written nowhere."""
    parse = parser_for(connector)
    file_digest(path, bytes_max=bytes_max)
    sql, args = matching.classify_sql(rules)
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            await store.raise_statement_timeout(conn, settings.reconcile_statement_timeout_ms)
            with open(path, encoding="utf-8-sig", newline="") as f:
                counted = _Counted(parse(f))
                await store.stage(conn, counted)
            outcomes = await store.classify_counts(conn, owner=store.owner_of(connector), sql=sql, args=args,
                                                   connector=connector)
        finally:
            await tx.rollback()
    return DryRun(connector=connector, rules=rules.name, lines=counted.n, outcomes=outcomes)


async def reconcile_file(ctx: Context, connector: str, path: Path, *, rules: matching.RuleSet | None = None,
                         period: tuple[datetime.datetime, datetime.datetime] | None = None,
                         bytes_max: int = FILE_BYTES_MAX) -> Ingested:
    """Ingest one settlement file of `connector` (see the module's docstring)."""
    parse = parser_for(connector)
    rules = rules or matching.default()
    owner = store.owner_of(connector)
    sha256, size = file_digest(path, bytes_max=bytes_max)
    sql, args = matching.classify_sql(rules)
    async with ctx.pool.acquire() as conn:
        previous = await store.file_run(conn, owner, sha256)
        if previous is not None:
            return Ingested(run=await store.get_run(conn, owner, previous), replayed=True)
        try:
            async with conn.transaction():
                await store.raise_statement_timeout(conn, ctx.settings.reconcile_statement_timeout_ms)
                run_id = await store.start_run(conn, owner=owner, kind="settlement", connector=connector,
                                               sha256=sha256)
                with open(path, encoding="utf-8-sig", newline="") as f:
                    counted = _Counted(parse(f))
                    await store.stage(conn, counted)
                await store.insert_file(conn, owner=owner, connector=connector, sha256=sha256, run_id=run_id,
                                        size_bytes=size, lines=counted.n)
                await store.classify_into_lines(conn, owner=owner, sha256=sha256, sql=sql, args=args,
                                                connector=connector)
                await store.line_breaks(conn, owner=owner, sha256=sha256, run_id=run_id, outcomes=BREAK_OUTCOMES)
                period = period or await store.staged_period(conn)
                if period is not None:
                    await store.set_period(conn, owner, run_id, period)
                    await store.missing_at_psp(conn, owner=owner, connector=connector, run_id=run_id, period=period)
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "recon_file_pkey":  # another runner ingested the same file meanwhile
                previous = await store.file_run(conn, owner, sha256)
                return Ingested(run=await store.get_run(conn, owner, previous), replayed=True)
            raise
        async with conn.transaction():
            await store.raise_statement_timeout(conn, ctx.settings.reconcile_statement_timeout_ms)
            fees = await store.post_fees(conn, owner, sha256)
    fixed, queued = await fixes.settle_run(ctx, owner, run_id)
    async with ctx.pool.acquire() as conn, conn.transaction():
        await store.raise_statement_timeout(conn, ctx.settings.reconcile_statement_timeout_ms)
        totals = await store.file_totals(conn, owner, sha256)
        for row in fees:
            totals.setdefault(row["currency"], {})["fees_posted_minor"] = row["fee_minor"]
        await store.finish_run(conn, owner, run_id, lines=counted.n, totals=totals)
        run = await store.get_run(conn, owner, run_id)
    log.info("reconcile.settlement_done", connector=connector, lines=counted.n, fixed=fixed, queued=queued,
             counts=run.counts)
    return Ingested(run=run, replayed=False)
