"""Risk limits are per currency, and a user's accepted payments of the last 24 h are capped per
currency: through the API, the worker and the PSP simulator."""
from __future__ import annotations

import asyncio

import pytest

from paycell.config import load
from paycell.config.settings import SettingsError
from paycell.money import format_amount
from tests.helpers import assert_ledger_clean, final_payment, new_user, pay, wallet


def limit(settings, currency: str, *, daily: bool = False, plus_minor: int = 0) -> str:
    limits = settings.risk_daily_amount_minor_max_by_currency if daily else settings.risk_amount_minor_max_by_currency
    return format_amount(limits[currency] + plus_minor, currency)


@pytest.mark.parametrize("setting", ["RISK_AMOUNT_MINOR_MAX_BY_CURRENCY", "RISK_DAILY_AMOUNT_MINOR_MAX_BY_CURRENCY"])
def test_paycell_refuses_to_start_without_a_limit_for_every_wallet_currency(setting):
    with pytest.raises(SettingsError, match="KWD"):
        load({f"PAYCELL_{setting}": "USD:100,EUR:100,GBP:100,JPY:100"})
    with pytest.raises(SettingsError, match="KWD"):
        load({"PAYCELL_WALLET_CURRENCIES": "USD,KWD", f"PAYCELL_{setting}": "USD:100"})
    with pytest.raises(SettingsError, match="positive"):
        load({f"PAYCELL_{setting}": "USD:0,EUR:100,GBP:100,JPY:100,KWD:100"})
    assert load({"PAYCELL_WALLET_CURRENCIES": "USD", f"PAYCELL_{setting}": "USD:100"}) is not None


def test_the_old_currency_blind_limit_is_refused_rather_than_ignored():
    with pytest.raises(SettingsError, match="PAYCELL_RISK_AMOUNT_MINOR_MAX_BY_CURRENCY"):
        load({"PAYCELL_RISK_AMOUNT_MINOR_MAX": "100000"})


def test_the_default_limits_mean_about_the_same_money_in_every_currency(settings):
    # 50,000 USD-ish per payment: one number of minor units would mean 50,000.00 USD but 5,000,000 JPY.
    per = settings.risk_amount_minor_max_by_currency
    assert (per["USD"], per["JPY"], per["KWD"]) == (50_000_00, 7_500_000, 15_000_000)


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize("currency, amount", [("JPY", "5000001"), ("KWD", "6000.000")])
async def test_an_amount_within_its_own_currencys_limit_passes(api, settings, pool, currency, amount):
    """Both were blocked while one minor-unit limit (5,000,000) held for every currency."""
    user = new_user()
    status, body = await pay(api, settings, user, "tok_card_ok", f"wallet:{user}", amount, "card",
                             currency=currency, wait_s=10)
    final = body if status == 201 else await final_payment(api, settings, user, body["payment_id"])
    assert final["status"] == "succeeded", final
    await assert_ledger_clean(pool)


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize("currency", ["USD", "JPY", "KWD"])
async def test_an_amount_over_its_currencys_limit_is_blocked(api, settings, pool, currency):
    user = new_user()
    amount = limit(settings, currency, plus_minor=1)
    status, body = await pay(api, settings, user, "tok_card_ok", f"wallet:{user}", amount, "card",
                             currency=currency, wait_s=10)
    final = body if status == 201 else await final_payment(api, settings, user, body["payment_id"])
    assert (final["status"], final["failure_code"]) == ("failed", "amount_over_risk_limit"), final
    await assert_ledger_clean(pool)


@pytest.mark.usefixtures("worker")
async def test_the_daily_total_per_currency_is_capped_and_a_blocked_payout_reserves_nothing(api, settings, pool):
    user = new_user()
    per, daily = (settings.risk_amount_minor_max_by_currency["USD"],
                  settings.risk_daily_amount_minor_max_by_currency["USD"])
    assert daily % per == 0
    up_to_the_limit = await asyncio.gather(*(
        pay(api, settings, user, "tok_card_ok", f"wallet:{user}", limit(settings, "USD"), "card", wait_s=10)
        for _ in range(daily // per)))
    finals = [await final_payment(api, settings, user, b["payment_id"]) for _, b in up_to_the_limit]
    assert {f["status"] for f in finals} == {"succeeded"}, finals
    total = limit(settings, "USD", daily=True)
    assert await wallet(api, settings, user) == {"USD": (total, "0.00")}

    for src, dst, option in (("tok_card_ok", f"wallet:{user}", "card"),
                             (f"wallet:{user}", "tok_bank_ok", "bank_account")):
        status, body = await pay(api, settings, user, src, dst, "0.01", option, wait_s=10)
        final = await final_payment(api, settings, user, body["payment_id"])
        assert (final["status"], final["failure_code"]) == ("failed", "daily_limit_exceeded"), final
        assert "order.reserved" not in [e["type"] for e in final["events"]]
    assert await wallet(api, settings, user) == {"USD": (total, "0.00")}
    # Another currency has its own daily total.
    status, body = await pay(api, settings, user, "tok_card_ok", f"wallet:{user}", "10.00", "card",
                             currency="EUR", wait_s=10)
    assert (await final_payment(api, settings, user, body["payment_id"]))["status"] == "succeeded"
    await assert_ledger_clean(pool)


@pytest.mark.usefixtures("worker")
async def test_declined_payments_do_not_count_toward_the_daily_total(api, settings, pool):
    user = new_user()
    daily = settings.risk_daily_amount_minor_max_by_currency["USD"]
    per = settings.risk_amount_minor_max_by_currency["USD"]
    for _ in range(daily // per + 1):  # one after the other: a payment in flight counts until it fails
        _, body = await pay(api, settings, user, "tok_card_decline", f"wallet:{user}", limit(settings, "USD"), "card",
                            wait_s=10)
        assert (await final_payment(api, settings, user, body["payment_id"]))["failure_code"] == "card_declined"
    status, body = await pay(api, settings, user, "tok_card_ok", f"wallet:{user}", limit(settings, "USD"), "card",
                             wait_s=10)
    assert (await final_payment(api, settings, user, body["payment_id"]))["status"] == "succeeded"
    await assert_ledger_clean(pool)


@pytest.mark.usefixtures("worker")
async def test_concurrent_payments_never_pass_the_daily_limit_together(api, settings, pool):
    """Screened at once by the worker's threads, the payments that pass stay within the limit
    together. A payment counts from its acceptance until it fails, so a burst over the limit may
    be blocked whole (safe side); once the blocked ones have failed, the room left is usable."""
    user = new_user()
    per = settings.risk_amount_minor_max_by_currency["USD"]
    daily = settings.risk_daily_amount_minor_max_by_currency["USD"]
    accepted = await asyncio.gather(*(
        pay(api, settings, user, "tok_card_ok", f"wallet:{user}", limit(settings, "USD"), "card")
        for _ in range(daily // per + 3)))
    finals = await asyncio.gather(*(final_payment(api, settings, user, b["payment_id"]) for _, b in accepted))
    passed_minor = per * sum(f["status"] == "succeeded" for f in finals)
    assert passed_minor <= daily
    assert {f["failure_code"] for f in finals if f["status"] != "succeeded"} == {"daily_limit_exceeded"}
    room_minor = daily - passed_minor
    chunks = [per] * (room_minor // per) + ([room_minor % per] if room_minor % per else [])
    for amount, expected in [(chunk, "succeeded") for chunk in chunks] + [(1, "failed")]:
        _, body = await pay(api, settings, user, "tok_card_ok", f"wallet:{user}", format_amount(amount, "USD"),
                            "card", wait_s=10)
        assert (await final_payment(api, settings, user, body["payment_id"]))["status"] == expected
    assert await wallet(api, settings, user) == {"USD": (format_amount(daily, "USD"), "0.00")}
    await assert_ledger_clean(pool)
