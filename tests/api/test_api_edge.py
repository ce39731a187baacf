"""Slow and abusive clients meet limits, liveness costs nothing, readiness is cached, and answers
leak neither the server software nor internal detail (issue 6, items 9 and 10)."""
from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import structlog
from aiohttp import web

from paycell.http.app import create_app
from paycell.http.health import READINESS
from paycell.http.state import POOL
from paycell.store import events
from tests.api.conftest import parked
from tests.conftest import _free_port, _wait_for_port
from tests.api.support import PAYMENTS, WALLET, call, error_of, get_as, payer, payin, post_payment, served
from tests.helpers import auth_header, new_user


async def _read_all(reader: asyncio.StreamReader, timeout_s: float) -> bytes:
    async with asyncio.timeout(timeout_s):
        return await reader.read()  # until the server closes the connection


async def test_a_trickled_body_is_answered_408_and_the_connection_closed(migrated):
    settings = parked(migrated, http_body_read_timeout_s=0.5)
    user = new_user()
    async with served(settings) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = (f"POST {PAYMENTS} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Authorization: {auth_header(settings, user)['Authorization']}\r\nContent-Length: 300\r\n\r\n{{")
        writer.write(head.encode())
        await writer.drain()
        async with asyncio.timeout(5):
            answer = await reader.readuntil(b"}}")  # the end of the error body
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 408 Request Timeout", answer[:200]
    assert b"\r\nConnection: close\r\n" in rest  # the rest of that body is not awaited
    assert b'"code":"request_timeout"' in rest


async def test_a_body_that_arrived_whole_is_read_without_a_timer(api, settings, monkeypatch):
    """The deadline's timer is for bodies still arriving (above); a whole one costs none."""
    from paycell.http import edge
    timers: list[float] = []
    real = asyncio.timeout

    def counted(delay):
        timers.append(delay)
        return real(delay)
    monkeypatch.setattr(edge.asyncio, "timeout", counted)
    user = await payer(api, settings)
    timers.clear()
    assert (await post_payment(api, settings, user, payin(user))).status == 202
    assert settings.http_body_read_timeout_s not in timers, timers


async def test_paycell_web_disconnects_slow_headers_and_never_names_its_software(migrated):
    settings = parked(migrated)
    port = _free_port()
    env = {**os.environ, "PAYCELL_HTTP_PORT": str(port), "PAYCELL_REDIS_URL": settings.redis_url,
           "PAYCELL_HTTP_KEEPALIVE_TIMEOUT_S": "0.5"}
    proc = subprocess.Popen([str(Path(sys.executable).with_name("paycell")), "web"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await asyncio.to_thread(_wait_for_port, port, proc)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        await writer.drain()
        assert await _read_all(reader, timeout_s=5) == b""  # closed without an answer
        writer.close()
        # A request the HTTP parser refuses never reaches the app; its answer names no software either.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GARBAGE \x00\r\n\r\n")
        await writer.drain()
        answer = await _read_all(reader, timeout_s=5)
        writer.close()
        assert answer.startswith(b"HTTP/1.0 400") and b"aiohttp" not in answer and b"Python" not in answer
    finally:
        proc.terminate()
        proc.wait(20)


async def test_requests_beyond_the_concurrency_cap_are_503_with_retry_after(aiohttp_client, migrated):
    release = asyncio.Event()
    entered = 0

    async def slow(request: web.Request) -> web.Response:
        nonlocal entered
        entered += 1
        await release.wait()
        return web.json_response({"ok": True})

    app = create_app(parked(migrated, http_concurrent_requests_max=2))
    app.router.add_get("/slow", slow)
    client = await aiohttp_client(app)
    headers = auth_header(migrated, new_user())
    held = [asyncio.create_task(client.get("/slow", headers=headers)) for _ in range(2)]
    while entered < 2:
        await asyncio.sleep(0.01)
    shed = await call(client, "GET", WALLET, headers=headers)
    assert error_of(shed) == (503, "overloaded")
    assert shed.headers["Retry-After"] == "1"
    assert (await call(client, "GET", "/health")).status == 200  # liveness is not capped
    release.set()
    assert [(await t).status for t in held] == [200, 200]
    assert (await call(client, "GET", WALLET, headers=headers)).status == 200


async def test_an_exhausted_pool_answers_503_after_the_acquire_timeout(aiohttp_client, migrated):
    client = await aiohttp_client(create_app(parked(migrated, db_pool_size_min=1, db_pool_size_max=1,
                                                    db_acquire_timeout_s=0.3)))
    user = new_user()
    held = await client.app[POOL].acquire(timeout=5)
    try:
        async with asyncio.timeout(5):
            reply = await call(client, "GET", WALLET, headers=auth_header(migrated, user))
        assert error_of(reply) == (503, "service_unavailable")
        assert reply.headers["Retry-After"] == "1"
    finally:
        await client.app[POOL].release(held)
    assert (await call(client, "GET", WALLET, headers=auth_header(migrated, user))).status == 200


async def test_liveness_does_no_io(api):
    await api.app[POOL].close()  # the database is gone: the process itself still lives
    reply = await call(api, "GET", "/health")
    assert (reply.status, reply.json) == (200, {"ok": True})


async def test_readiness_checks_the_stores_at_most_once_per_period(aiohttp_client, migrated):
    client = await aiohttp_client(create_app(parked(migrated, readiness_cache_s=0.5)))
    readiness = client.app[READINESS]
    replies = await asyncio.gather(*(call(client, "GET", "/ready") for _ in range(50)))
    replies += [await call(client, "GET", "/ready") for _ in range(20)]
    assert {(r.status, str(r.json)) for r in replies} == {
        (200, str({"ok": True, "checks": {"database": "ok", "redis": "ok"}}))}
    assert readiness.checks_run == 1
    await client.app[POOL].close()
    assert (await call(client, "GET", "/ready")).status == 200  # still the cached answer
    await asyncio.sleep(0.6)
    down = await call(client, "GET", "/ready")
    assert error_of(down) == (503, "not_ready") and "database" in down.json["error"]["message"]
    assert down.headers["Retry-After"] == "1"
    assert readiness.checks_run == 2


async def test_no_answer_names_the_server_software(api, settings):
    user = new_user()
    for method, path, headers in (("GET", "/health", {}), ("GET", "/nowhere", {}), ("GET", WALLET, {}),
                                  ("GET", WALLET, auth_header(settings, user)), ("DELETE", WALLET, {})):
        async with api.request(method, path, headers=headers) as resp:
            assert "Server" not in resp.headers, (method, path, resp.headers.get("Server"))


async def test_authenticated_answers_are_never_cached(api, settings):
    user = new_user()
    created = await post_payment(api, settings, user, payin(user))
    for reply in (created, await get_as(api, settings, user, WALLET), await call(api, "GET", WALLET),
                  await get_as(api, settings, user, f"{PAYMENTS}/{uuid.uuid4()}")):
        assert reply.headers["Cache-Control"] == "no-store", reply.status


async def test_a_clients_request_id_is_kept_apart_from_ours(api, settings):
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        reply = await call(api, "GET", WALLET, headers={"X-Request-Id": "abc-123", **auth_header(settings, new_user())})
    ours = reply.headers["X-Request-Id"]
    assert ours != "abc-123" and re.fullmatch(r"[0-9a-f]{32}", ours)
    assert reply.headers["X-Client-Request-Id"] == "abc-123"
    logged = [entry for entry in logs if entry["event"] == "http.request"]
    assert [(e["request_id"], e["client_request_id"]) for e in logged] == [(ours, "abc-123")]
    unnamed = await call(api, "GET", "/health", headers={"X-Request-Id": "not ok!"})
    assert "X-Client-Request-Id" not in unnamed.headers and unnamed.headers["X-Request-Id"] != "not ok!"


async def test_a_payments_history_shows_only_the_public_part_of_each_event(api, settings, pool):
    user = await payer(api, settings)
    created = await post_payment(api, settings, user, payin(user))
    payment_id = created.json["payment_id"]
    order_id = created.json["orders"][0]["payment_order_id"]
    leaky = [
        ("order.reserved", {"transaction_id": 4711}),
        ("order.psp_attempt_failed", {"from": "psp_submitting", "to": "psp_submitting", "attempt": 1,
                                      "error": "Cannot connect to host 10.0.0.7:8090 ssl:default"}),
        ("order.posting_failed", {"from": "psp_succeeded", "to": "psp_succeeded",
                                  "error": "KeyError: 'balance' in /srv/paycell/store/ledger.py"}),
        ("order.needs_attention", {"from": "psp_pending", "to": "needs_attention", "reason": "retries_exhausted",
                                   "step": "charge", "retries": 3, "error": "Traceback (most recent call last)"}),
        ("order.failed", {"from": "psp_pending", "to": "failed", "reason": {"nested": "object"}}),
        ("order.something_new", {"secret": "internal"}),
    ]
    async with pool.acquire() as conn:
        for type_, data in leaky:
            await events.append(conn, user_id=user, type=type_, payment_id=payment_id, payment_order_id=order_id,
                                data=data)
    reply = await get_as(api, settings, user, f"{PAYMENTS}/{payment_id}")
    shown = {e["type"]: e["data"] for e in reply.json["events"]}
    assert shown["payment.requested"] == {"kind": "payin", "currency": "USD", "from_acct": "tok_card_ok",
                                          "to_acct": f"wallet:{user}", "payment_option": "card"}
    assert shown["order.reserved"] == {}
    assert shown["order.psp_attempt_failed"] == {"from": "psp_submitting", "to": "psp_submitting", "attempt": 1}
    assert shown["order.posting_failed"] == {"from": "psp_succeeded", "to": "psp_succeeded"}
    assert shown["order.needs_attention"] == {"from": "psp_pending", "to": "needs_attention",
                                              "reason": "retries_exhausted"}
    assert shown["order.failed"] == {"from": "psp_pending", "to": "failed"}
    assert shown["order.something_new"] == {}
