"""Queries of scheduled payments (payment_schedule, schedule_run) and of the periodic jobs' slots
(periodic_job). Every query on a user's schedule names the user: another user's is not found."""
from __future__ import annotations

import datetime

import asyncpg
import msgspec


class Schedule(msgspec.Struct, kw_only=True):
    """One row of payment_schedule."""
    user_id: str
    schedule_id: str
    kind: str
    payment_option: str
    from_acct: str
    to_acct: str
    amount_minor: int
    currency: str
    recurrence: str
    time_zone: str
    start_local: datetime.datetime
    end_count: int | None
    end_until_local: datetime.datetime | None
    status: str
    paused_reason: str | None
    consecutive_failures: int
    last_resolved_at: datetime.datetime | None
    last_occurrence_at: datetime.datetime | None
    next_occurrence_at: datetime.datetime | None
    next_run_at: datetime.datetime | None
    created_at: datetime.datetime
    updated_at: datetime.datetime


class Run(msgspec.Struct, kw_only=True, frozen=True):
    """One row of schedule_run."""
    user_id: str
    schedule_id: str
    occurrence_at: datetime.datetime
    outcome: str
    payment_id: str | None = None
    failure_code: str | None = None
    check_after: datetime.datetime | None = None


_COLUMNS = """user_id, schedule_id::text, kind, payment_option, from_acct, to_acct, amount_minor, rtrim(currency) AS currency,
              recurrence, time_zone, start_local, end_count, end_until_local, status, paused_reason,
              consecutive_failures, last_resolved_at, last_occurrence_at, next_occurrence_at, next_run_at,
              created_at, updated_at"""
# Columns a schedule's owner or its clock may change.
SETTABLE = frozenset({"amount_minor", "recurrence", "start_local", "end_count", "end_until_local", "status",
                      "paused_reason", "consecutive_failures", "last_resolved_at", "last_occurrence_at",
                      "next_occurrence_at", "next_run_at"})


def _schedule(row) -> Schedule:
    return Schedule(**dict(row.items()))


async def insert(conn: asyncpg.Connection, s: Schedule) -> None:
    await conn.execute(
        """INSERT INTO payment_schedule (user_id, schedule_id, kind, payment_option, from_acct, to_acct, amount_minor,
                                         currency, recurrence, time_zone, start_local, end_count, end_until_local,
                                         status, next_occurrence_at, next_run_at, created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17)""",
        s.user_id, s.schedule_id, s.kind, s.payment_option, s.from_acct, s.to_acct, s.amount_minor, s.currency,
        s.recurrence, s.time_zone, s.start_local, s.end_count, s.end_until_local, s.status, s.next_occurrence_at,
        s.next_run_at, s.created_at)


async def get(conn, user_id: str, schedule_id: str, *, lock: bool = False) -> Schedule | None:
    """The user's schedule (FOR UPDATE with `lock`); None for anyone else's or none."""
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM payment_schedule WHERE user_id = $1 AND schedule_id = $2"
                              + (" FOR UPDATE" if lock else ""), user_id, schedule_id)
    return _schedule(row) if row else None


async def update(conn, user_id: str, schedule_id: str, **fields) -> None:
    """Set `fields` (names from SETTABLE) on the user's schedule."""
    unknown = set(fields) - SETTABLE
    if unknown:
        raise ValueError(f"not settable on a schedule: {sorted(unknown)}")
    names = list(fields)
    sets = ", ".join(f"{name} = ${i + 3}" for i, name in enumerate(names))
    await conn.execute(f"UPDATE payment_schedule SET {sets}, updated_at = now() WHERE user_id = $1 AND schedule_id = $2",
                       user_id, schedule_id, *(fields[n] for n in names))


async def list_recent(conn, user_id: str, *, limit: int, before: tuple | None) -> list[Schedule]:
    """The user's schedules, newest first, keyset-paginated on (created_at, schedule_id)."""
    if before is None:
        rows = await conn.fetch(f"""SELECT {_COLUMNS} FROM payment_schedule WHERE user_id = $1
                                    ORDER BY created_at DESC, schedule_id DESC LIMIT $2""", user_id, limit)
    else:
        rows = await conn.fetch(f"""SELECT {_COLUMNS} FROM payment_schedule
                                    WHERE user_id = $1 AND (created_at, schedule_id) < ($3, $4::uuid)
                                    ORDER BY created_at DESC, schedule_id DESC LIMIT $2""",
                                user_id, limit, before[0], before[1])
    return [_schedule(r) for r in rows]


async def last_runs(conn, user_id: str, schedule_ids: list[str], *, limit: int) -> dict[str, list[asyncpg.Record]]:
    """The latest `limit` runs of each of the user's `schedule_ids` (newest first), with their payments' status."""
    rows = await conn.fetch(
        """SELECT r.schedule_id::text, r.occurrence_at, r.outcome, r.payment_id::text, r.failure_code, r.ran_at,
                  p.status AS payment_status
             FROM unnest($2::uuid[]) AS s(id)
             CROSS JOIN LATERAL (SELECT * FROM schedule_run
                                  WHERE user_id = $1 AND schedule_id = s.id
                                  ORDER BY occurrence_at DESC LIMIT $3) r
             LEFT JOIN payment_request p ON p.user_id = r.user_id AND p.payment_id = r.payment_id
            ORDER BY r.occurrence_at DESC""", user_id, schedule_ids, limit)
    found: dict[str, list[asyncpg.Record]] = {sid: [] for sid in schedule_ids}
    for row in rows:
        found[row["schedule_id"]].append(row)
    return found


# -- the clock --------------------------------------------------------------------------------------

async def claim_due(conn: asyncpg.Connection, *, now: datetime.datetime, limit: int) -> list[Schedule]:
    """Up to `limit` active schedules whose run time has come, locked (SKIP LOCKED: another clock's
    claims are passed over, never waited for) until the caller's transaction ends."""
    rows = await conn.fetch(f"""SELECT {_COLUMNS} FROM payment_schedule
                                 WHERE status = 'active' AND next_run_at <= $1
                                 ORDER BY next_run_at LIMIT $2 FOR UPDATE SKIP LOCKED""", now, limit)
    return [_schedule(r) for r in rows]


async def record_runs(conn: asyncpg.Connection, runs: list[Run]) -> None:
    """Insert runs in one statement; a run recorded before (same occurrence) is left as it is."""
    if not runs:
        return
    await conn.execute(
        """INSERT INTO schedule_run (user_id, schedule_id, occurrence_at, outcome, payment_id, failure_code,
                                     check_after, resolved_at)
           SELECT u, s, o, oc, p, f, c, CASE WHEN oc <> 'pending' THEN now() END
             FROM unnest($1::text[], $2::uuid[], $3::timestamptz[], $4::text[], $5::uuid[], $6::text[],
                         $7::timestamptz[]) AS r(u, s, o, oc, p, f, c)
           ON CONFLICT (user_id, schedule_id, occurrence_at) DO NOTHING""",
        [r.user_id for r in runs], [r.schedule_id for r in runs], [r.occurrence_at for r in runs],
        [r.outcome for r in runs], [r.payment_id for r in runs], [r.failure_code for r in runs],
        [r.check_after for r in runs])


class Advance(msgspec.Struct, frozen=True):
    """Where the clock leaves a schedule after running it."""
    user_id: str
    schedule_id: str
    status: str
    paused_reason: str | None
    consecutive_failures: int
    last_occurrence_at: datetime.datetime
    next_occurrence_at: datetime.datetime | None
    next_run_at: datetime.datetime | None


async def advance(conn: asyncpg.Connection, moves: list[Advance]) -> None:
    """Move the claimed schedules on, in one statement."""
    if not moves:
        return
    await conn.execute(
        """UPDATE payment_schedule s
              SET status = m.status, paused_reason = m.reason, consecutive_failures = m.failures,
                  last_occurrence_at = m.last_at, next_occurrence_at = m.next_at, next_run_at = m.run_at,
                  updated_at = now()
             FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::int[], $6::timestamptz[],
                         $7::timestamptz[], $8::timestamptz[]) AS m(u, id, status, reason, failures, last_at, next_at,
                                                                   run_at)
            WHERE s.user_id = m.u AND s.schedule_id = m.id""",
        [m.user_id for m in moves], [m.schedule_id for m in moves], [m.status for m in moves],
        [m.paused_reason for m in moves], [m.consecutive_failures for m in moves],
        [m.last_occurrence_at for m in moves], [m.next_occurrence_at for m in moves], [m.next_run_at for m in moves])


# -- outcomes ---------------------------------------------------------------------------------------

async def claim_pending_runs(conn: asyncpg.Connection, *, now: datetime.datetime, limit: int) -> list[asyncpg.Record]:
    """Up to `limit` pending runs due for a look, locked (SKIP LOCKED), with their payment's status
    and failure code."""
    return await conn.fetch(
        """SELECT r.user_id, r.schedule_id::text, r.occurrence_at, r.payment_id::text, r.ran_at,
                  p.status AS payment_status, p.failure_code
             FROM schedule_run r JOIN payment_request p ON p.user_id = r.user_id AND p.payment_id = r.payment_id
            WHERE r.outcome = 'pending' AND r.check_after <= $1
            ORDER BY r.check_after LIMIT $2 FOR UPDATE OF r SKIP LOCKED""", now, limit)


async def resolve_runs(conn: asyncpg.Connection, runs: list[tuple[str, str, datetime.datetime, str, str | None]]) -> None:
    """Give runs (user, schedule, occurrence, outcome, failure code) their outcome."""
    await conn.execute(
        """UPDATE schedule_run r SET outcome = x.outcome, failure_code = x.code, check_after = NULL, resolved_at = now()
             FROM unnest($1::text[], $2::uuid[], $3::timestamptz[], $4::text[], $5::text[]) AS x(u, s, o, outcome, code)
            WHERE r.user_id = x.u AND r.schedule_id = x.s AND r.occurrence_at = x.o""",
        [r[0] for r in runs], [r[1] for r in runs], [r[2] for r in runs], [r[3] for r in runs], [r[4] for r in runs])


async def look_again(conn: asyncpg.Connection, runs: list[tuple[str, str, datetime.datetime, datetime.datetime]]) -> None:
    """Set when pending runs (user, schedule, occurrence, check_after) are looked at next."""
    await conn.execute(
        """UPDATE schedule_run r SET check_after = x.c
             FROM unnest($1::text[], $2::uuid[], $3::timestamptz[], $4::timestamptz[]) AS x(u, s, o, c)
            WHERE r.user_id = x.u AND r.schedule_id = x.s AND r.occurrence_at = x.o""",
        [r[0] for r in runs], [r[1] for r in runs], [r[2] for r in runs], [r[3] for r in runs])


async def lock_many(conn: asyncpg.Connection, keys: list[tuple[str, str]]) -> list[Schedule]:
    """Lock schedules (user, schedule id) in key order (the order every multi-schedule locker uses)."""
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM payment_schedule
             WHERE (user_id, schedule_id) IN (SELECT * FROM unnest($1::text[], $2::uuid[]))
             ORDER BY user_id, schedule_id FOR UPDATE""", [k[0] for k in keys], [k[1] for k in keys])
    return [_schedule(r) for r in rows]


# -- periodic jobs ----------------------------------------------------------------------------------

async def ensure_jobs(conn: asyncpg.Connection, jobs: list[tuple[str, str, datetime.datetime]]) -> None:
    """Register jobs (name, cron, first slot); a job whose cron changed starts again from its new first slot."""
    await conn.execute(
        """INSERT INTO periodic_job (name, cron, next_run_at)
           SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[])
           ON CONFLICT (name) DO UPDATE
              SET cron = EXCLUDED.cron, next_run_at = EXCLUDED.next_run_at
            WHERE periodic_job.cron <> EXCLUDED.cron""",
        [j[0] for j in jobs], [j[1] for j in jobs], [j[2] for j in jobs])


async def claim_due_jobs(conn: asyncpg.Connection, *, now: datetime.datetime, names: list[str]) -> list[asyncpg.Record]:
    """The jobs among `names` whose slot has come, locked (SKIP LOCKED) until the transaction ends."""
    return await conn.fetch("""SELECT name, cron, next_run_at FROM periodic_job
                                WHERE next_run_at <= $1 AND name = ANY($2::text[])
                                ORDER BY name FOR UPDATE SKIP LOCKED""", now, names)


async def job_ran(conn: asyncpg.Connection, name: str, *, ran_at: datetime.datetime,
                  next_run_at: datetime.datetime) -> None:
    await conn.execute("UPDATE periodic_job SET last_run_at = $2, next_run_at = $3 WHERE name = $1",
                       name, ran_at, next_run_at)


# -- operators' reads across users (the console: paycell/console) --------------------------------

async def due_next(conn, *, limit: int) -> list[Schedule]:
    """Active schedules of every user by their next run (index payment_schedule_due_at)."""
    rows = await conn.fetch(f"""SELECT {_COLUMNS} FROM payment_schedule WHERE status = 'active'
                                ORDER BY next_run_at LIMIT $1""", limit)
    return [_schedule(r) for r in rows]


async def paused(conn, *, limit: int) -> list[Schedule]:
    """Paused schedules of every user, latest change first (index payment_schedule_paused)."""
    rows = await conn.fetch(f"""SELECT {_COLUMNS} FROM payment_schedule WHERE status = 'paused'
                                ORDER BY updated_at DESC LIMIT $1""", limit)
    return [_schedule(r) for r in rows]
