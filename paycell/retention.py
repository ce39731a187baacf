"""Retention: idempotency keys are kept `idempotency_key_retention_s` (at least 24 h, like Stripe's),
then deleted, so that the table holds days of keys, not years.

Run by the periodic actor `expire_idempotency_keys` (the scheduler, every hour) and by
`paycell idempotency expire`. Each batch is one short statement of at most
`idempotency_expire_batch_rows` rows, so the job never holds many locks or a long transaction; a
run stops after `idempotency_expire_batches_max` batches and the next run goes on. The payment
requests stay: a client that re-sends an expired key is told so (IdempotencyKeyExpired), never
given a second payment.
"""
from __future__ import annotations

import datetime
from collections.abc import Callable

import asyncpg
import msgspec
import structlog

from paycell.config import Settings
from paycell.store import idempotency

log = structlog.get_logger("paycell.retention")


class ExpireResult(msgspec.Struct):
    deleted: int
    batches: int
    cutoff: datetime.datetime
    done: bool  # False when the run stopped at its batch bound with keys left to delete


async def expire_idempotency_keys(pool: asyncpg.Pool, settings: Settings, *,
                                  progress: Callable[[str], None] | None = None) -> ExpireResult:
    """Delete the keys first used before now - retention, batch by batch; one progress line a batch."""
    cutoff = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(
        seconds=settings.idempotency_key_retention_s)
    batch_rows = settings.idempotency_expire_batch_rows
    result = ExpireResult(deleted=0, batches=0, cutoff=cutoff, done=False)
    while result.batches < settings.idempotency_expire_batches_max:
        async with pool.acquire() as conn:
            deleted = await idempotency.expire(conn, created_before=cutoff, limit=batch_rows)
        result.batches += 1
        result.deleted += deleted
        line = (f"idempotency keys before {cutoff.isoformat(timespec='seconds')}: batch {result.batches} "
                f"deleted {deleted}, {result.deleted} in all")
        log.info("idempotency.expire.batch", batch=result.batches, deleted=deleted, total=result.deleted)
        if progress is not None:
            progress(line)
        if deleted < batch_rows:
            result.done = True
            break
    return result
