"""The fraud model's versions (risk_model, migration 0016): store, decide, list, load.

Every statement is parameterised. The app role inserts and may change only status, promoted_at
and note; the database allows the moves candidate -> promoted | rejected and promoted -> retired,
and at most one promoted model.
"""
from __future__ import annotations

import datetime
import re
from collections.abc import Sequence

import asyncpg

# A transaction-scoped advisory lock serialising promotion decisions: two trainers finishing at
# once decide one after the other, each against the model the other may just have promoted.
PROMOTION_LOCK_ID = 0x7269736B6D6F64  # 'riskmod'

# Who trained a model: 'actor', 'cli' or an operator's id (the column's CHECK says the same).
TRAINED_BY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}")

_INSERT = """
INSERT INTO risk_model (trained_by, source, source_detail, window_from, window_to, holdout_from, feature_names,
                        metrics, format, model, model_sha256)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
RETURNING version
"""

_SUMMARY = ("version, created_at, trained_by, source, source_detail, window_from, window_to, holdout_from, "
            "feature_names, metrics, format, octet_length(model) AS model_bytes, status, promoted_at, note")


async def insert_candidate(conn: asyncpg.Connection, *, trained_by: str, source: str, source_detail: dict,
                           window_from: datetime.datetime, window_to: datetime.datetime,
                           holdout_from: datetime.datetime, feature_names: Sequence[str], metrics: dict,
                           format: str, model: bytes, model_sha256: bytes) -> int:
    """Store a trained model as `candidate`; returns its version."""
    return await conn.fetchval(_INSERT, trained_by, source, source_detail, window_from, window_to, holdout_from,
                               list(feature_names), metrics, format, model, model_sha256)


async def lock_for_decision(conn: asyncpg.Connection) -> asyncpg.Record | None:
    """In the caller's transaction: take the promotion lock, then the promoted model's row lock;
    returns that row (with its model bytes), or None when no model is promoted."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", PROMOTION_LOCK_ID)
    return await conn.fetchrow(
        "SELECT version, feature_names, format, model, model_sha256, metrics FROM risk_model "
        "WHERE status = 'promoted' FOR UPDATE")


async def lock_candidate(conn: asyncpg.Connection, version: int) -> str | None:
    """Lock model `version` in the caller's transaction; returns its status."""
    return await conn.fetchval("SELECT status FROM risk_model WHERE version = $1 FOR UPDATE", version)


async def promote(conn: asyncpg.Connection, version: int, *, retire: int | None, note: str) -> None:
    """Retire the promoted model `retire` (when given), then promote `version` (a candidate)."""
    if retire is not None:
        await conn.execute("UPDATE risk_model SET status = 'retired' WHERE version = $1 AND status = 'promoted'",
                           retire)
    done = await conn.execute(
        "UPDATE risk_model SET status = 'promoted', promoted_at = now(), note = $2 "
        "WHERE version = $1 AND status = 'candidate'", version, note)
    if done != "UPDATE 1":
        raise RuntimeError(f"risk model {version} is not a candidate any more")


async def reject(conn: asyncpg.Connection, version: int, *, note: str) -> None:
    done = await conn.execute(
        "UPDATE risk_model SET status = 'rejected', note = $2 WHERE version = $1 AND status = 'candidate'",
        version, note)
    if done != "UPDATE 1":
        raise RuntimeError(f"risk model {version} is not a candidate any more")


async def promoted_version(conn: asyncpg.Connection) -> int | None:
    """The promoted model's version (one index lookup: the scorer's cheap check)."""
    return await conn.fetchval("SELECT version FROM risk_model WHERE status = 'promoted'")


async def fetch_model(conn: asyncpg.Connection, version: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT version, status, feature_names, format, model, model_sha256 FROM risk_model WHERE version = $1",
        version)


async def get(conn: asyncpg.Connection, version: int) -> asyncpg.Record | None:
    """One model's summary (no model bytes)."""
    return await conn.fetchrow(f"SELECT {_SUMMARY} FROM risk_model WHERE version = $1", version)


async def list_models(conn: asyncpg.Connection, *, limit: int) -> list[asyncpg.Record]:
    """The newest models first, without their bytes."""
    return await conn.fetch(f"SELECT {_SUMMARY} FROM risk_model ORDER BY version DESC LIMIT $1", limit)
