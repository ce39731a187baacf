"""A user's scheduled payments through the API: create (idempotent on the client's schedule id),
read with the next occurrences and the last runs, change, pause, resume, cancel. The HTTP layer
calls these and nothing else; every one is scoped to the caller (another user's schedule is a 404).
"""
from __future__ import annotations

import datetime
import hashlib
import uuid

import asyncpg
import msgspec
import structlog

from paycell import checkout, money, schemas
from paycell.config import Settings
from paycell.errors import Conflict, IdempotencyConflict, IdempotencyKeyExpired, NotFound, Unprocessable
from paycell.schedules import occurrences, recurrence
from paycell.store import idempotency, payments, schedules
from paycell.store.schedules import Schedule

log = structlog.get_logger("paycell.schedules")
NEXT_SHOWN = 5
RUNS_SHOWN = 10
START_AGE_S_MAX = 366 * 86_400  # a start further back would make every computation walk that far
KEY_PREFIX = "schedule:"        # a schedule's idempotency key: never a payment's (those are bare UUIDs)
_PKEY = "payment_schedule_pkey"


class Accepted(msgspec.Struct, frozen=True):
    status: int
    body: bytes
    replayed: bool
    schedule_id: str


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _iso(ts: datetime.datetime) -> str:
    return ts.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def parse_local(text: str, tz, field: str, *, date_ends_day: bool = False) -> datetime.datetime:
    """An ISO date-time (or, with `date_ends_day`, a date: its last second) as naive local time in `tz`."""
    try:
        if date_ends_day and len(text) == 10:
            return datetime.datetime.fromisoformat(text).replace(hour=23, minute=59, second=59)
        value = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise Unprocessable(f"{field} must be an ISO 8601 local date-time such as 2027-01-31T09:00:00",
                            code=f"{field}_invalid", field=field) from None
    if not 2000 <= value.year <= 2999:  # checked before any conversion: year 9999 - 14:00 overflows
        raise Unprocessable(f"{field} must fall in the years 2000 to 2999", code=f"{field}_invalid", field=field)
    if value.tzinfo is not None:
        value = value.astimezone(tz).replace(tzinfo=None)
    return value.replace(microsecond=0)


def _end(rule_end: recurrence.End, count: int | None, until: str | None, tz,
         start_local: datetime.datetime) -> recurrence.End:
    given = [name for name, v in (("count", count), ("until", until)) if v is not None]
    if rule_end.count is not None or rule_end.until_local is not None:
        if given:
            raise Unprocessable(f"the recurrence has its own end (COUNT or UNTIL): leave out {given[0]}",
                                code="end_conflict", field=given[0])
        end = rule_end
    elif len(given) == 2:
        raise Unprocessable("give count or until, not both", code="end_conflict", field="until")
    else:
        end = recurrence.End(count=count, until_local=None if until is None else
                             parse_local(until, tz, "until", date_ends_day=True))
    if end.until_local is not None and end.until_local < start_local:
        raise Unprocessable("until is before start", code="until_invalid", field="until")
    return end


def checked(rule_text: str, tz_name: str, start_local: datetime.datetime, end: recurrence.End | None,
            settings: Settings, *, body_count: int | None = None, body_until: str | None = None) -> tuple[
                recurrence.Rule, recurrence.Recurrence]:
    """The recurrence a request asks for, refused (422) when it does not parse, has no occurrence
    left, or repeats faster than PAYCELL_SCHEDULE_INTERVAL_S_MIN."""
    rule, rule_end = recurrence.parse(rule_text)
    tz = recurrence.zone(tz_name)
    if end is None:
        end = _end(rule_end, body_count, body_until, tz, start_local)
    rec = recurrence.Recurrence(rule, tz, start_local, end)
    gap_s = rec.shortest_gap_s()
    if gap_s is not None and gap_s < settings.schedule_interval_s_min:
        raise recurrence.RecurrenceInvalid(
            f"occurrences come {gap_s:.0f} s apart; the minimum is {settings.schedule_interval_s_min} s "
            "(PAYCELL_SCHEDULE_INTERVAL_S_MIN)", code="recurrence_too_frequent")
    return rule, rec


def _template(body: schemas.ScheduleIn, caller: str, settings: Settings):
    """The payment the schedule makes, validated as POST /payments/payment/v1 validates it."""
    try:
        schedule_id = str(uuid.UUID(body.schedule_id))
    except ValueError:
        raise Unprocessable("schedule_id must be a UUID", code="schedule_id_invalid", field="schedule_id") from None
    as_payment = schemas.PaymentIn(payment_id=schedule_id, user_id=body.user_id, from_acct=body.from_acct,
                                   to_acct=body.to_acct, amount=body.amount, currency=body.currency,
                                   payment_option=body.payment_option)
    return schedule_id, checkout.validate(as_payment, caller, settings)


async def create(pool: asyncpg.Pool, settings: Settings, caller: str, raw: bytes, *,
                 now: datetime.datetime | None = None) -> Accepted:
    """Create a schedule once per (caller, schedule_id): the same id and body replay the first
    answer, another body is IdempotencyConflict. Its counterparty is checked as a payment's is (an
    instrument the caller attached, a payee's open wallet: 403, 422). Nothing is written for a
    request refused."""
    now = now or _utc_now()
    body = checkout.decode(raw, schemas.ScheduleIn)
    schedule_id, payment = _template(body, caller, settings)
    tz = recurrence.zone(body.time_zone)
    start_local = parse_local(body.start, tz, "start")
    if recurrence.to_utc(start_local, tz) < now - datetime.timedelta(seconds=START_AGE_S_MAX):
        raise Unprocessable("start is more than a year ago", code="start_invalid", field="start")
    rule, rec = checked(body.recurrence, body.time_zone, start_local, None, settings,
                        body_count=body.count, body_until=body.until)
    first = rec.after(now - datetime.timedelta(microseconds=1), 1)
    if not first:
        raise recurrence.RecurrenceInvalid("the recurrence has no occurrence left after now", code="recurrence_ended")
    s = Schedule(user_id=caller, schedule_id=schedule_id, kind=payment.kind, payment_option=payment.payment_option,
                 from_acct=payment.from_acct, to_acct=payment.to_acct, amount_minor=payment.amount_minor,
                 currency=payment.currency, recurrence=rule.text(), time_zone=body.time_zone, start_local=start_local,
                 end_count=rec.end.count, end_until_local=rec.end.until_local, status="active", paused_reason=None,
                 consecutive_failures=0, last_resolved_at=None, last_occurrence_at=None,
                 next_occurrence_at=first[0],
                 next_run_at=occurrences.run_at(schedule_id, first[0], settings.schedule_jitter_s),
                 created_at=now, updated_at=now)
    digest = hashlib.sha256(msgspec.json.encode(msgspec.structs.replace(body, schedule_id=schedule_id))).digest()
    response = msgspec.json.encode(view(s, []))
    key = KEY_PREFIX + schedule_id
    async with pool.acquire() as conn:
        try:
            async with conn.transaction():
                if await idempotency.claim_completed(conn, user_id=caller, key=key, request_sha256=digest, status=201,
                                                     body=response):
                    # Checked once the key is ours: a replay replays, even after a detach.
                    if not await payments.gate_open(conn, caller, payment.payment_option,
                                                    checkout.gate_for(payment, settings)):
                        raise checkout.refused(payment)  # rolls the claim back: nothing written
                    await schedules.insert(conn, s)
                    log.info("schedule.created", schedule_id=schedule_id, recurrence=s.recurrence)
                    return Accepted(201, response, False, schedule_id)
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != _PKEY:
                raise
            raise IdempotencyKeyExpired(f"schedule_id {schedule_id} belongs to an earlier schedule whose idempotency "
                                        "key expired; a new schedule needs a new schedule_id",
                                        field="schedule_id") from None
        stored = await idempotency.stored(conn, user_id=caller, key=key)
    if stored is None or stored.request_sha256 != digest:
        raise IdempotencyConflict("this schedule_id was used before with a different request", field="schedule_id")
    return Accepted(stored.status, stored.body, True, schedule_id)


def view(s: Schedule, runs: list, *, now: datetime.datetime | None = None) -> schemas.ScheduleView:
    """The API's view of a schedule: its next occurrences (while it is active or paused) and last runs."""
    upcoming: list[datetime.datetime] = []
    if s.status == "active" and s.next_occurrence_at is not None:
        upcoming = [s.next_occurrence_at,
                    *occurrences.recurrence_of(s).after(s.next_occurrence_at, NEXT_SHOWN - 1)]
    elif s.status == "paused":
        upcoming = occurrences.recurrence_of(s).after(_resume_after(s, now or _utc_now()), NEXT_SHOWN)
    return schemas.ScheduleView(
        schedule_id=s.schedule_id, user_id=s.user_id, kind=s.kind, status=s.status, paused_reason=s.paused_reason,
        consecutive_failures=s.consecutive_failures, amount=money.format_amount(s.amount_minor, s.currency),
        currency=s.currency, from_acct=s.from_acct, to_acct=s.to_acct, payment_option=s.payment_option,
        recurrence=s.recurrence, time_zone=s.time_zone, start=s.start_local.isoformat(), count=s.end_count,
        until=s.end_until_local.isoformat() if s.end_until_local else None,
        next_occurrences=[_iso(t) for t in upcoming],
        last_runs=[schemas.RunView(occurrence_at=_iso(r["occurrence_at"]), outcome=r["outcome"],
                                   payment_id=r["payment_id"], failure_code=r["failure_code"]) for r in runs],
        created_at=_iso(s.created_at), updated_at=_iso(s.updated_at))


def _resume_after(s: Schedule, now: datetime.datetime) -> datetime.datetime:
    # Occurrences are never run twice, nor run for the time a schedule was paused.
    return max(now - datetime.timedelta(microseconds=1), s.last_occurrence_at or now - datetime.timedelta(microseconds=1))


async def get(pool, caller: str, schedule_id: str) -> schemas.ScheduleView:
    schedule_id = _id(schedule_id)
    async with pool.acquire() as conn:
        s = await schedules.get(conn, caller, schedule_id)
        if s is None:
            raise NotFound("no such scheduled payment")
        runs = await schedules.last_runs(conn, caller, [schedule_id], limit=RUNS_SHOWN)
    return view(s, runs[schedule_id])


async def list_page(pool, caller: str, *, limit: int, before: tuple | None) -> tuple[list[schemas.ScheduleView], bool,
                                                                                   Schedule | None]:
    """A page of the caller's schedules, newest first: (views, has_more, the last schedule shown)."""
    async with pool.acquire() as conn:
        found = await schedules.list_recent(conn, caller, limit=limit + 1, before=before)
        page = found[:limit]
        runs = await schedules.last_runs(conn, caller, [s.schedule_id for s in page], limit=RUNS_SHOWN)
    return [view(s, runs[s.schedule_id]) for s in page], len(found) > limit, (page[-1] if page else None)


def _id(schedule_id: str) -> str:
    try:
        return str(uuid.UUID(schedule_id))
    except ValueError:
        raise NotFound("no such scheduled payment") from None


async def change(pool, settings: Settings, caller: str, schedule_id: str, raw: bytes, *,
                 now: datetime.datetime | None = None) -> schemas.ScheduleView:
    """Apply a ScheduleUpdate under the schedule's lock; a cancelled schedule cannot change (409)."""
    now = now or _utc_now()
    schedule_id = _id(schedule_id)
    update = checkout.decode(raw, schemas.ScheduleUpdate)
    async with pool.acquire() as conn:
        async with conn.transaction():
            s = await schedules.get(conn, caller, schedule_id, lock=True)
            if s is None:
                raise NotFound("no such scheduled payment")
            if s.status == "cancelled":
                raise Conflict("this scheduled payment was cancelled; create a new one", code="schedule_cancelled")
            fields = _changes(s, update, settings, now)
            await schedules.update(conn, caller, schedule_id, **fields)
            log.info("schedule.changed", schedule_id=schedule_id, fields=sorted(fields))
            s = await schedules.get(conn, caller, schedule_id)
        runs = await schedules.last_runs(conn, caller, [schedule_id], limit=RUNS_SHOWN)
    return view(s, runs[schedule_id], now=now)


def _changes(s: Schedule, u: schemas.ScheduleUpdate, settings: Settings, now: datetime.datetime) -> dict:
    fields: dict = {}
    if u.amount is not msgspec.UNSET:
        try:
            fields["amount_minor"] = money.parse_amount(u.amount, s.currency, max_minor=settings.amount_minor_max)
        except money.MoneyError as exc:
            raise Unprocessable(str(exc), code=exc.code, field="amount") from None
    rule_text = s.recurrence if u.recurrence is msgspec.UNSET else u.recurrence
    rule, rule_end = recurrence.parse(rule_text)
    tz = recurrence.zone(s.time_zone)
    count = s.end_count if u.count is msgspec.UNSET else u.count
    until_local = s.end_until_local
    if u.until is not msgspec.UNSET:
        until_local = None if u.until is None else parse_local(u.until, tz, "until", date_ends_day=True)
    if u.count not in (msgspec.UNSET, None) and u.until is msgspec.UNSET:
        until_local = None  # a new count replaces an end by date
    if u.until not in (msgspec.UNSET, None) and u.count is msgspec.UNSET:
        count = None
    if rule_end.count is not None or rule_end.until_local is not None:
        count, until_local = rule_end.count, rule_end.until_local
    if count is not None and until_local is not None:
        raise Unprocessable("give count or until, not both", code="end_conflict", field="until")
    if until_local is not None and until_local < s.start_local:
        raise Unprocessable("until is before start", code="until_invalid", field="until")
    end = recurrence.End(count=count, until_local=until_local)
    rule, rec = checked(rule.text(), s.time_zone, s.start_local, end, settings)
    fields.update(recurrence=rule.text(), end_count=count, end_until_local=until_local)
    status = s.status if u.status is msgspec.UNSET else u.status
    if s.status == "ended" and u.status is msgspec.UNSET:
        status = "active"  # a new rule or end may give an ended schedule occurrences again
    if status == "paused":
        fields.update(status="paused", paused_reason=s.paused_reason or "paused_by_user")
        return fields
    nxt = rec.after(_next_after(s, now), 1)
    next_at = nxt[0] if nxt else None
    fields.update(status="active" if next_at else "ended", paused_reason=None, next_occurrence_at=next_at,
                  next_run_at=occurrences.run_at(s.schedule_id, next_at, settings.schedule_jitter_s))
    if s.status != "active":
        fields["consecutive_failures"] = 0
    return fields


def _next_after(s: Schedule, now: datetime.datetime) -> datetime.datetime:
    """Where a changed schedule looks for its next occurrence: an active one keeps an occurrence that
    came but has not run yet (it waits for its jitter); a resumed one starts after now."""
    tiny = datetime.timedelta(microseconds=1)
    if s.status == "active" and s.next_occurrence_at is not None and s.next_occurrence_at <= now:
        return max(s.next_occurrence_at - tiny, s.last_occurrence_at or s.next_occurrence_at - tiny)
    return _resume_after(s, now)


async def cancel(pool, caller: str, schedule_id: str) -> schemas.ScheduleView:
    """Cancel a schedule: no occurrence runs again; its past runs and payments stay. Idempotent."""
    schedule_id = _id(schedule_id)
    async with pool.acquire() as conn:
        async with conn.transaction():
            s = await schedules.get(conn, caller, schedule_id, lock=True)
            if s is None:
                raise NotFound("no such scheduled payment")
            if s.status != "cancelled":
                await schedules.update(conn, caller, schedule_id, status="cancelled", paused_reason=None,
                                       next_run_at=None, next_occurrence_at=None)
                log.info("schedule.cancelled", schedule_id=schedule_id)
            s = await schedules.get(conn, caller, schedule_id)
        runs = await schedules.last_runs(conn, caller, [schedule_id], limit=RUNS_SHOWN)
    return view(s, runs[schedule_id])
