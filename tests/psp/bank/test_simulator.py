"""The bank simulator's own contract, over raw HTTP: Modern Treasury's idempotency, listing,
authentication and errors, accounts made through the API, and the day's statement report."""
from __future__ import annotations

import datetime
import uuid

import aiohttp
import msgspec
import pytest

from paycell.psp.bank import calendar, rail, report
from tests.psp.bank.conftest import charge

MONDAY = 0


@pytest.fixture
def auth(settings) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(settings.bank_organization_id, settings.bank_api_key)}


def _order(settings, account: str = rail.SUCCESS_ACCOUNT, amount: int = 10_00, **metadata) -> dict:
    return {"type": "ach", "direction": "debit", "amount": amount, "currency": "USD",
            "originating_account_id": settings.bank_originating_account_id,
            "receiving_account_id": rail.external_account_id(account), "metadata": metadata}


async def test_the_same_idempotency_key_answers_the_first_response_and_another_body_is_refused(bank, auth, settings):
    url = f"{bank.url}/api/payment_orders"
    key = str(uuid.uuid4())
    async with bank.http.post(url, json=_order(settings), headers={**auth, "Idempotency-Key": key}) as first:
        assert first.status == 201
        made = await first.json()
    async with bank.http.post(url, json=_order(settings), headers={**auth, "Idempotency-Key": key}) as again:
        assert (again.status, await again.json()) == (201, made)
    async with bank.http.post(url, json=_order(settings, amount=11_00), headers={**auth, "Idempotency-Key": key}) as other:
        assert other.status == 422
        assert (await other.json())["errors"]["code"] == "parameter_invalid"
    # Without a key every request is a new payment order, as the provider does it.
    async with bank.http.post(url, json=_order(settings), headers=auth) as unkeyed:
        assert unkeyed.status == 201
    assert len(await bank.charges()) == 2


async def test_requests_need_the_organizations_credentials(bank, settings):
    url = f"{bank.url}/api/payment_orders"
    for headers in ({}, {"Authorization": aiohttp.encode_basic_auth(settings.bank_organization_id, "wrong")},
                    {"Authorization": "Basic not-base64!"}):
        async with bank.http.post(url, json=_order(settings), headers=headers) as resp:
            assert resp.status == 401
            assert (await resp.json())["errors"]["code"] == "unauthorized"
    assert await bank.charges() == []


@pytest.mark.parametrize(("change", "parameter"), [
    ({"type": "wire"}, "type"), ({"currency": "EUR"}, "currency"),
    ({"originating_account_id": str(uuid.uuid4())}, "originating_account_id"),
    ({"receiving_account_id": str(uuid.uuid4())}, "receiving_account_id"),
    ({"amount": 0}, None), ({"direction": "sideways"}, None),
])
async def test_an_invalid_payment_order_is_refused_with_422(bank, auth, settings, change, parameter):
    async with bank.http.post(f"{bank.url}/api/payment_orders", json={**_order(settings), **change},
                              headers=auth) as resp:
        assert resp.status == 422
        error = (await resp.json())["errors"]
    assert error["parameter"] == parameter
    assert await bank.charges() == []


async def test_listing_filters_by_metadata_and_pages_with_a_cursor(bank, auth, settings):
    url = f"{bank.url}/api/payment_orders"
    for i in range(3):
        async with bank.http.post(url, json=_order(settings, batch="b1", n=str(i)), headers=auth) as resp:
            assert resp.status == 201
    async with bank.http.post(url, json=_order(settings, batch="b2"), headers=auth):
        pass
    seen, cursor = [], None
    while True:
        query = {"metadata[batch]": "b1", "per_page": "2", **({"after_cursor": cursor} if cursor else {})}
        async with bank.http.get(url, params=query, headers=auth) as resp:
            page = await resp.json()
            cursor = resp.headers["X-After-Cursor"]
        seen += [o["metadata"]["n"] for o in page]
        if not cursor:
            break
    assert seen == ["2", "1", "0"]  # newest first, each once
    async with bank.http.get(url, params={"metadata[batch]": "none"}, headers=auth) as resp:
        assert await resp.json() == []
    async with bank.http.get(f"{url}/{uuid.uuid4()}", headers=auth) as resp:
        assert resp.status == 404


async def test_accounts_made_through_the_api_follow_the_sandbox_numbers(bank, auth, psp):
    body = {"name": "Kenner, Bach and Ledeen", "accounts": [{"account_details": [{"account_number": "10003"}]}]}
    async with bank.http.post(f"{bank.url}/api/counterparties", json=body, headers=auth) as resp:
        assert resp.status == 201
        [account] = (await resp.json())["accounts"]
    async with bank.http.get(f"{bank.url}/api/external_accounts/{account['id']}", headers=auth) as resp:
        assert (await resp.json())["counterparty_id"] == account["counterparty_id"]
    monday_s = await bank.advance_to_next(MONDAY, datetime.time(9, 0))
    c = msgspec.structs.replace(charge("payin"), instrument=account["id"])
    await psp.submit(c)
    await bank.advance_to(calendar.settlement_s(calendar.date_of(monday_s), 2))
    result = await psp.status(c)
    assert (result.status, result.decline_code) == ("declined", "no_account")


async def test_the_statement_report_lists_each_day_s_postings_and_late_returns(bank, psp):
    monday_s = await bank.advance_to_next(MONDAY, datetime.time(9, 0))
    monday = calendar.date_of(monday_s)
    pay_in, pay_out = charge("payin", amount_minor=25_00), charge("payout", amount_minor=7_00)
    late, early = charge("payin", account="10010", amount_minor=3_00), charge("payin", account="10001")
    for c in (pay_in, pay_out, late, early):
        await psp.submit(c)
    await bank.advance_to(calendar.settlement_s(monday, 2))
    tuesday, wednesday = monday + datetime.timedelta(days=1), monday + datetime.timedelta(days=2)

    async def rows(day: datetime.date) -> list[report.Row]:
        async with bank.http.get(f"{bank.url}/_sim/reports", params={"date": day.isoformat()}) as resp:
            assert resp.status == 200 and resp.content_type == "text/csv"
            return report.parse(await resp.read())

    assert await rows(monday) == []
    [out] = await rows(tuesday)
    assert (out.direction, out.amount, out.currency, out.order_id, out.return_code) == (
        "debit", 7_00, "USD", pay_out.idempotency_key, None)
    assert {(r.order_id, r.direction, r.amount) for r in await rows(wednesday)} == {
        (pay_in.idempotency_key, "credit", 25_00), (late.idempotency_key, "credit", 3_00)}  # R01 never posted
    return_at_s = calendar.settlement_s(monday, 2) + rail.LATE_RETURN_S
    await bank.advance_to(return_at_s)
    [back] = await rows(calendar.date_of(return_at_s))
    assert (back.order_id, back.direction, back.amount, back.return_code) == (late.idempotency_key, "debit", 3_00, "R10")


def test_the_report_parser_reads_by_header_and_refuses_what_it_cannot_read():
    body = ("currency,amount,direction,extra,id,as_of_date,payment_order_id\n"
            "USD,1200,credit,x,t1,2026-11-25,po1\n").encode()
    [row] = report.parse(body)
    assert (row.id, row.amount, row.direction, row.order_id, row.return_code) == ("t1", 1200, "credit", "", None)
    with pytest.raises(report.ReportError, match="lacks columns"):
        report.parse(b"id,amount\nt1,1\n")
    with pytest.raises(report.ReportError, match="bad direction or amount"):
        report.parse(b"id,as_of_date,direction,amount,currency,payment_order_id\nt1,2026-11-25,credit,12.00,USD,p\n")


async def test_a_payment_order_cancelled_before_the_cutoff_is_a_decline(bank, auth, psp):
    monday_s = await bank.advance_to_next(MONDAY, datetime.time(9, 0))
    c = charge("payout")
    made = await psp.submit(c)
    url = f"{bank.url}/api/payment_orders/{made.psp_reference}"
    async with bank.http.patch(url, json={"status": "cancelled"}, headers=auth) as resp:
        assert (resp.status, (await resp.json())["status"]) == (200, "cancelled")
    result = await psp.status(c)
    assert (result.status, result.decline_code) == ("declined", "cancelled")
    [record] = await bank.charges()
    assert record["status"] == "cancelled"
    assert await bank.wait_for_events(1) == ["cancelled"]
    [event] = await psp.verify_webhook(*bank.received.deliveries[0])
    assert (event.kind, event.result.decline_code) == ("outcome", "cancelled")
    # After the cut-off nothing is cancelled any more.
    later = charge("payout")
    sent = await psp.submit(later)
    await bank.advance_to(calendar.cutoff_s(calendar.date_of(monday_s)))
    async with bank.http.patch(f"{bank.url}/api/payment_orders/{sent.psp_reference}", json={"status": "cancelled"},
                               headers=auth) as resp:
        assert resp.status == 422
    assert (await psp.status(later)).status == "pending"
