"""Scheduled payments under a clock the test controls: schedules are created through the API's
domain function (paycell.schedules.manage.create) at a `now` the test gives, and the clock runs at
the instants the test names. Every schedule a test made is cancelled when it ends, so that no other
test's clock finds it due."""
from __future__ import annotations

import datetime
import json
import uuid

import msgspec
import pytest

from paycell.schedules import manage
from paycell.store import instruments, payments, users
from tests.helpers import assert_ledger_clean, new_user
from tests.helpers import lock_by_id

UTC = datetime.timezone.utc
# Far from the real clock: a `paycell scheduler` the suite starts (the demo) never finds these due.
EPOCH = datetime.datetime(2031, 1, 6, 8, 0, tzinfo=UTC)  # a Monday, 09:00 in Paris


class Sent:
    """An enqueue that records what it was asked to send (or fails, like a Redis that went away)."""

    def __init__(self, *, fail: bool = False):
        self.messages: list[tuple[str, ...]] = []
        self.fail = fail

    async def __call__(self, step: str, *ids: str) -> None:
        if self.fail:
            raise ConnectionError("redis is away")
        self.messages.append((step, *ids))


def body(user: str, *, schedule_id: str | None = None, recurrence: str = "daily",
         start: str = "2031-01-06T09:00:00", tz: str = "Europe/Paris", amount: str = "10.00", **extra) -> bytes:
    fields = {"schedule_id": schedule_id or str(uuid.uuid4()), "user_id": user, "from_acct": "tok_card_ok",
              "to_acct": f"wallet:{user}", "amount": amount, "currency": "USD", "payment_option": "card",
              "recurrence": recurrence, "time_zone": tz, "start": start, **extra}
    return json.dumps(fields).encode()


class Schedules:
    """Makes payers and their schedules; cancels them all at the end."""

    def __init__(self, pool, settings):
        self.pool, self.settings, self.users = pool, settings, []

    async def payer(self, prefix: str = "sched") -> str:
        user = new_user(prefix)
        async with self.pool.acquire() as conn:
            await users.register(conn, user)
            await instruments.attach(conn, user, connector="test", payment_option="card", provider_token="tok_card_ok")
        self.users.append(user)
        return user

    async def create(self, user: str, *, now: datetime.datetime = EPOCH - datetime.timedelta(days=1),
                     settings=None, **fields) -> str:
        accepted = await manage.create(self.pool, settings or self.settings, user, body(user, **fields), now=now)
        assert accepted.status == 201
        return accepted.schedule_id

    async def cancel_all(self) -> None:
        """Cancel the test's schedules, and fail the payments they made that no worker took (so that
        no later sweep sends hundreds of them to the suite's worker)."""
        await self.pool.execute(
            """UPDATE payment_schedule SET status = 'cancelled', paused_reason = NULL, next_run_at = NULL,
                      next_occurrence_at = NULL WHERE user_id = ANY($1::text[])""", self.users)
        left = await self.pool.fetch("""SELECT payment_order_id::text FROM payment_order
                                         WHERE user_id = ANY($1::text[]) AND payment_order_status = 'requested'""",
                                     self.users)
        for row in left:
            await decline(self.pool, row["payment_order_id"], "test_left_over")


async def decline(pool, order_id: str, code: str = "card_declined") -> None:
    """Fail a requested order the way a step does (payments.move): a declined payment."""
    async with pool.acquire() as conn, conn.transaction():
        order = await lock_by_id(conn, order_id)
        if order is not None and order.payment_order_status == "requested":
            await payments.move(conn, order, "failed", event="order.failed", data={"reason": code},
                                failure_code=code)


@pytest.fixture
def quiet(migrated):
    """The suite's settings without jitter (tests that want it set their own)."""
    return msgspec.structs.replace(migrated, schedule_jitter_s=0)


@pytest.fixture
async def made(pool, quiet):
    maker = Schedules(pool, quiet)
    yield maker
    await maker.cancel_all()
    await assert_ledger_clean(pool)
