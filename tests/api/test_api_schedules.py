"""The scheduled-payment API over real HTTP: create (idempotent), read with the next occurrences
and the last runs, list, change, pause, resume, cancel; refusals write nothing; another user's
schedule is not found."""
from __future__ import annotations

import json
import uuid

from paycell.http.schedules import SCHEDULES_PATH
from paycell.schedules import clock
from tests.helpers import attach, auth_header, new_user
from tests.schedules.conftest import Sent

START = "2031-01-31T09:00:00"


def schedule_body(user: str, **fields) -> dict:
    return {"schedule_id": str(uuid.uuid4()), "user_id": user, "from_acct": "tok_card_ok", "to_acct": f"wallet:{user}",
            "amount": "25.00", "currency": "USD", "payment_option": "card", "recurrence": "monthly",
            "time_zone": "Europe/Paris", "start": START, **fields}


async def _payer(api, settings) -> str:
    user = new_user("sched-api")
    await attach(api, settings, user, "tok_card_ok")
    return user


async def _written(pool, user: str) -> tuple[int, int]:
    return (await pool.fetchval("SELECT count(*) FROM payment_schedule WHERE user_id = $1", user),
            await pool.fetchval("SELECT count(*) FROM idempotency_key WHERE user_id = $1 AND key LIKE 'schedule:%'",
                                user))


async def test_a_schedule_is_created_once_and_shows_its_next_occurrences(api, settings, pool):
    user = await _payer(api, settings)
    headers = auth_header(settings, user)
    body = schedule_body(user, count=12)
    created = await api.post(SCHEDULES_PATH, json=body, headers=headers)
    view = await created.json()
    assert created.status == 201, view
    assert created.headers["Location"] == f"{SCHEDULES_PATH}/{body['schedule_id']}"
    assert view["object"] == "scheduled_payment" and view["status"] == "active" and view["kind"] == "payin"
    assert view["amount"] == "25.00" and view["count"] == 12 and view["recurrence"] == "FREQ=MONTHLY"
    assert view["next_occurrences"] == ["2031-01-31T08:00:00Z", "2031-02-28T08:00:00Z", "2031-03-31T07:00:00Z",
                                        "2031-04-30T07:00:00Z", "2031-05-31T07:00:00Z"]
    again = await api.post(SCHEDULES_PATH, json=body, headers=headers)
    assert again.status == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert await again.json() == view
    other = await api.post(SCHEDULES_PATH, json={**body, "amount": "26.00"}, headers=headers)
    assert other.status == 422 and (await other.json())["error"]["code"] == "idempotency_key_reused"
    got = await api.get(f"{SCHEDULES_PATH}/{body['schedule_id']}", headers=headers)
    assert got.status == 200 and (await got.json())["next_occurrences"] == view["next_occurrences"]
    listed = await api.get(SCHEDULES_PATH, headers=headers)
    assert [s["schedule_id"] for s in (await listed.json())["data"]] == [body["schedule_id"]]
    assert await _written(pool, user) == (1, 1)
    await api.delete(f"{SCHEDULES_PATH}/{body['schedule_id']}", headers=headers)


async def test_the_list_is_paginated_newest_first(api, settings):
    user = await _payer(api, settings)
    headers = auth_header(settings, user)
    ids = []
    for _ in range(3):
        body = schedule_body(user)
        assert (await api.post(SCHEDULES_PATH, json=body, headers=headers)).status == 201
        ids.append(body["schedule_id"])
    first = await (await api.get(SCHEDULES_PATH + "?limit=2", headers=headers)).json()
    assert first["has_more"] and len(first["data"]) == 2
    rest = await (await api.get(SCHEDULES_PATH + f"?limit=2&starting_after={first['next_cursor']}",
                                headers=headers)).json()
    assert not rest["has_more"]
    assert [s["schedule_id"] for s in first["data"] + rest["data"]] == ids[::-1]
    for schedule_id in ids:
        await api.delete(f"{SCHEDULES_PATH}/{schedule_id}", headers=headers)


async def test_pause_resume_change_and_cancel(api, settings, pool):
    user = await _payer(api, settings)
    headers = auth_header(settings, user)
    body = schedule_body(user)
    path = f"{SCHEDULES_PATH}/{body['schedule_id']}"
    await api.post(SCHEDULES_PATH, json=body, headers=headers)
    paused = await api.put(path, json={"status": "paused"}, headers=headers)
    view = await paused.json()
    assert paused.status == 200 and (view["status"], view["paused_reason"]) == ("paused", "paused_by_user")
    assert await pool.fetchval("SELECT next_run_at IS NOT NULL FROM payment_schedule WHERE schedule_id = $1",
                               body["schedule_id"])
    resumed = await (await api.put(path, json={"status": "active", "amount": "30.00",
                                               "recurrence": "FREQ=MONTHLY;BYMONTHDAY=15"}, headers=headers)).json()
    assert (resumed["status"], resumed["amount"], resumed["recurrence"]) == ("active", "30.00",
                                                                            "FREQ=MONTHLY;BYMONTHDAY=15")
    assert resumed["next_occurrences"][0] == "2031-02-15T08:00:00Z"
    ended_by_date = await (await api.put(path, json={"until": "2031-03-31"}, headers=headers)).json()
    assert ended_by_date["until"] == "2031-03-31T23:59:59" and len(ended_by_date["next_occurrences"]) == 2
    cancelled = await api.delete(path, headers=headers)
    assert cancelled.status == 200 and (await cancelled.json())["status"] == "cancelled"
    assert (await api.delete(path, headers=headers)).status == 200
    refused = await api.put(path, json={"status": "active"}, headers=headers)
    assert refused.status == 409 and (await refused.json())["error"]["code"] == "schedule_cancelled"


async def test_a_cancelled_schedule_keeps_its_past_payments(api, settings, pool, migrated):
    import datetime
    import msgspec

    user = await _payer(api, settings)
    headers = auth_header(settings, user)
    body = schedule_body(user, start="2031-01-06T09:00:00", recurrence="daily")
    await api.post(SCHEDULES_PATH, json=body, headers=headers)
    quiet = msgspec.structs.replace(migrated, schedule_jitter_s=0)
    await clock.run_due(pool, quiet, now=datetime.datetime(2031, 1, 6, 9, tzinfo=datetime.timezone.utc),
                        enqueue=Sent())
    view = await (await api.delete(f"{SCHEDULES_PATH}/{body['schedule_id']}", headers=headers)).json()
    (run,) = view["last_runs"]
    assert (run["occurrence_at"], run["outcome"]) == ("2031-01-06T08:00:00Z", "pending")
    payment = await api.get(f"/payments/payment/v1/{run['payment_id']}", headers=headers)
    assert payment.status == 200 and (await payment.json())["amount"] == "25.00"
    order_id = (await payment.json())["orders"][0]["payment_order_id"]
    from tests.schedules.conftest import decline
    await decline(pool, order_id)


async def test_another_users_schedule_is_not_found_and_cannot_be_changed(api, settings, pool):
    owner = await _payer(api, settings)
    body = schedule_body(owner)
    await api.post(SCHEDULES_PATH, json=body, headers=auth_header(settings, owner))
    mallory = auth_header(settings, new_user("mallory"))
    path = f"{SCHEDULES_PATH}/{body['schedule_id']}"
    for method, extra in (("GET", {}), ("PUT", {"json": {"status": "paused"}}), ("DELETE", {})):
        answer = await api.request(method, path, headers=mallory, **extra)
        assert answer.status == 404 and (await answer.json())["error"]["code"] == "not_found"
    assert (await (await api.get(SCHEDULES_PATH, headers=mallory)).json())["data"] == []
    assert (await api.get(f"{SCHEDULES_PATH}/not-a-uuid", headers=mallory)).status == 404
    status = await pool.fetchval("SELECT status FROM payment_schedule WHERE schedule_id = $1", body["schedule_id"])
    assert status == "active"
    await api.delete(path, headers=auth_header(settings, owner))


REFUSED = [
    ({"recurrence": "FREQ=FORTNIGHTLY"}, 422, "recurrence_invalid", "recurrence"),
    ({"recurrence": "FREQ=DAILY;BYHOUR=9;;"}, 422, "recurrence_invalid", "recurrence"),
    ({"recurrence": "FREQ=MINUTELY"}, 422, "recurrence_too_frequent", "recurrence"),
    ({"recurrence": "daily", "start": "2020-01-01T09:00:00"}, 422, "start_invalid", "start"),
    ({"recurrence": "FREQ=DAILY;COUNT=2", "start": "2026-01-01T09:00:00"}, 422, "recurrence_ended", "recurrence"),
    ({"recurrence": "FREQ=DAILY;COUNT=2"}, 201, None, None),
    ({"recurrence": "FREQ=DAILY;COUNT=2", "count": 3}, 422, "end_conflict", "count"),
    ({"count": 3, "until": "2031-12-31"}, 422, "end_conflict", "until"),
    ({"until": "2030-12-31"}, 422, "until_invalid", "until"),
    ({"until": "next year"}, 422, "until_invalid", "until"),
    ({"count": 0}, 400, "invalid_request", "count"),
    ({"time_zone": "Mars/Olympus"}, 422, "time_zone_invalid", "time_zone"),
    ({"start": "31/01/2031"}, 422, "start_invalid", "start"),
    ({"start": "9999-12-31T23:59:59-14:00"}, 422, "start_invalid", "start"),
    ({"schedule_id": "not-a-uuid"}, 422, "schedule_id_invalid", "schedule_id"),
    ({"amount": "12.345"}, 422, None, "amount"),
    ({"currency": "XXX"}, 422, None, "currency"),
    ({"payment_option": "cash"}, 422, None, None),
    ({"extra": 1}, 400, "invalid_request", None),
    ({"from_acct": "tok_card_decline"}, 403, "forbidden", "from_acct"),
    ({"from_acct": "wallet:{user}", "to_acct": "wallet:nobody-registered", "payment_option": "wallet"}, 422,
     "recipient_unknown", "to_acct"),
    ({"recurrence": None}, 400, "invalid_request", "recurrence"),
]


async def test_bad_rules_and_bad_bodies_get_a_4xx_and_write_nothing(api, settings, pool):
    user = await _payer(api, settings)
    headers = auth_header(settings, user)
    created = 0
    for fields, status, code, field in REFUSED:
        body = schedule_body(user, **{k: v.format(user=user) if isinstance(v, str) else v for k, v in fields.items()})
        answer = await api.post(SCHEDULES_PATH, json=body, headers=headers)
        out = await answer.json()
        assert answer.status == status, (fields, out)
        if status == 201:
            created += 1
            await api.delete(f"{SCHEDULES_PATH}/{body['schedule_id']}", headers=headers)
            continue
        assert set(out) == {"error"} and (code is None or out["error"]["code"] == code), (fields, out)
        assert field is None or out["error"].get("field") == field, (fields, out)
        assert "at character" in out["error"]["message"] or fields.get("recurrence") != "FREQ=FORTNIGHTLY"
    for raw in (b"{", b"[]", json.dumps(schedule_body(new_user("x"))).encode()):
        answer = await api.post(SCHEDULES_PATH, data=raw, headers={**headers, "Content-Type": "application/json"})
        assert answer.status in (400, 403), raw
    assert await _written(pool, user) == (created, created)
    path = f"{SCHEDULES_PATH}/{schedule_body(user)['schedule_id']}"
    assert (await api.put(path, json={"amount": "1.00"}, headers=headers)).status == 404


async def test_a_bad_change_is_refused_and_changes_nothing(api, settings, pool):
    user = await _payer(api, settings)
    headers = auth_header(settings, user)
    body = schedule_body(user)
    path = f"{SCHEDULES_PATH}/{body['schedule_id']}"
    before = await (await api.post(SCHEDULES_PATH, json=body, headers=headers)).json()
    for change, status in (({"recurrence": "FREQ=HOURLY;BYHOUR=3"}, 422), ({"amount": "-1"}, 422),
                           ({"status": "cancelled"}, 400), ({"count": 2, "until": "2031-05-01"}, 422),
                           ({"recurrence": "FREQ=MINUTELY;INTERVAL=5"}, 422), ({"colour": "red"}, 400)):
        answer = await api.put(path, json=change, headers=headers)
        assert answer.status == status, (change, await answer.json())
    after = await (await api.get(path, headers=headers)).json()
    assert after == before
    await api.delete(path, headers=headers)
