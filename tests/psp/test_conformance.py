"""One scenario list, run against every connector through paycell's whole pipeline (API ->
worker -> the connector -> its provider's simulator over real HTTP -> webhooks back), as
hyperswitch runs one list against every connector. After each scenario the simulator's own
record shows exactly one succeeded charge per paid order, for the order's amount, and none for a
failed one; and the ledger check is clean.

The suite acts as each provider's world would (tests/psp/conformance.py `drive`): the customer
approves when the provider asks (PayPal, 3-D Secure), and the rail's clock runs past settlement
while a charge is pending (ACH). A connector that lacks a capability (Stripe has no pay-outs here,
the bank rail no customer action) skips that scenario, saying so.
"""
from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.helpers import assert_ledger_clean, auth_header, new_user, pay, postings_of, wait_until
from tests.psp.conformance import Sim, all_drivers, attach_on, drive, minor, pay_via, reverse

pytestmark = pytest.mark.usefixtures("worker")
DRIVERS = all_drivers()


@pytest.fixture(params=DRIVERS, ids=[d.connector for d in DRIVERS])
def driver(request):
    return request.param


@pytest.fixture
async def sim(driver, psp_sim, api):
    s = Sim(psp_sim, driver)
    await s.webhooks(url=str(api.make_url(f"/psp/webhooks/{driver.connector}")))
    yield s
    await s.clear_faults()
    await s.webhooks(url=str(api.make_url(f"/psp/webhooks/{driver.connector}")))
    await s.close()


async def paid_once(sim: Sim, payment: dict) -> None:
    """The simulator made exactly one succeeded charge for the payment's order, for its amount."""
    order = payment["orders"][0]
    charges = await sim.charges_for(order["payment_order_id"])
    assert [c["status"] for c in charges] == ["succeeded"], charges
    assert charges[0]["amount_minor"] == minor(payment["amount"]), (charges, payment["amount"])
    assert charges[0]["currency"] == payment["currency"]


async def paid_never(sim: Sim, payment: dict) -> None:
    order = payment["orders"][0]
    charges = await sim.charges_for(order["payment_order_id"])
    assert not [c for c in charges if c["status"] == "succeeded"], charges


async def test_payin_succeeds(api, settings, pool, driver, sim):
    user = new_user(driver.connector)
    status, body = await pay_via(api, settings, driver, user, kind="payin", option=driver.option,
                                 token=driver.payin_ok, amount="25.00")
    assert status in (201, 202), body
    payment = await drive(api, settings, pool, sim, driver, user, body["payment_id"])
    assert payment["status"] == "succeeded", payment
    assert payment["orders"][0]["psp"] == driver.connector
    await paid_once(sim, payment)
    await assert_ledger_clean(pool)


async def test_payout_succeeds(api, settings, pool, driver, sim):
    if driver.payout_ok is None:
        pytest.skip(f"{driver.connector} carries no pay-outs here")
    user = new_user(driver.connector)
    assert (await pay(api, settings, user, "tok_card_ok", f"wallet:{user}", "40.00", "card", wait_s=10))[0] == 201
    status, body = await pay_via(api, settings, driver, user, kind="payout", option=driver.option,
                                 token=driver.payout_ok, amount="15.00", wait_s=1)
    assert status in (201, 202), body
    payment = await drive(api, settings, pool, sim, driver, user, body["payment_id"])
    assert payment["status"] == "succeeded", payment
    await paid_once(sim, payment)
    await assert_ledger_clean(pool)


async def test_each_decline_fails_the_payment_and_moves_no_money(api, settings, pool, driver, sim):
    if not driver.declines:
        pytest.skip(f"{driver.connector}'s simulator has no declining instrument")
    for code, token in driver.declines.items():
        user = new_user(driver.connector)
        status, body = await pay_via(api, settings, driver, user, kind="payin", option=driver.option,
                                     token=token, amount="9.99", wait_s=1)
        assert status in (201, 202), body
        payment = await drive(api, settings, pool, sim, driver, user, body["payment_id"])
        assert (payment["status"], payment["failure_code"]) == ("failed", code), payment
        await paid_never(sim, payment)
    await assert_ledger_clean(pool)


async def test_lost_response_is_asked_about_and_charged_once(api, settings, pool, driver, sim):
    """The PSP makes the charge and the answer is lost: paycell asks before sending again, and
    the simulator holds exactly one charge for the order."""
    user = new_user(driver.connector)
    await sim.faults(drop_after_charge=1)
    status, body = await pay_via(api, settings, driver, user, kind="payin", option=driver.option,
                                 token=driver.payin_ok, amount="31.40", wait_s=1)
    assert status in (201, 202), body
    payment = await drive(api, settings, pool, sim, driver, user, body["payment_id"])
    assert payment["status"] == "succeeded", payment
    await paid_once(sim, payment)
    await assert_ledger_clean(pool)


async def test_resubmitting_the_same_payment_charges_once(api, settings, pool, driver, sim):
    user = new_user(driver.connector)
    payment_id = str(uuid.uuid4())
    await attach_on(api, settings, user, driver.connector, driver.option, driver.payin_ok)
    body = {"payment_id": payment_id, "user_id": user, "from_acct": driver.payin_ok, "to_acct": f"wallet:{user}",
            "amount": "7.00", "currency": driver.currency, "payment_option": driver.option}
    answers = []
    for _ in range(3):
        resp = await api.post("/payments/payment/v1", headers=auth_header(settings, user), json=body)
        answers.append((resp.status, (await resp.json())["payment_id"]))
    assert {a[1] for a in answers} == {payment_id} and all(s in (200, 201, 202) for s, _ in answers), answers
    full = await api.get(f"/payments/payment/v1/{payment_id}", headers=auth_header(settings, user))
    payment = await full.json()
    order_ids = {o["payment_order_id"] for o in payment["orders"]}
    assert len(order_ids) == 1
    payment = await drive(api, settings, pool, sim, driver, user, payment_id)
    await paid_once(sim, payment)
    await assert_ledger_clean(pool)


async def test_requires_action_then_approval(api, settings, pool, driver, sim):
    if driver.action is None:
        pytest.skip(f"{driver.connector}'s simulator has no customer-action flow")
    option, token = driver.action
    user = new_user(driver.connector)
    status, body = await pay_via(api, settings, driver, user, kind="payin", option=option, token=token,
                                 amount="18.00", wait_s=1)

    async def waiting():
        resp = await api.get(f"/payments/payment/v1/{body['payment_id']}", headers=auth_header(settings, user))
        got = await resp.json()
        return got if got["status"] == "requires_action" else None

    payment = await wait_until(waiting, timeout_s=20)
    assert payment, "the payment never asked for the customer's action"
    assert payment["next_action"]["type"] == "redirect_to_url" and payment["next_action"]["url"]
    payment = await drive(api, settings, pool, sim, driver, user, body["payment_id"])
    assert payment["status"] == "succeeded", payment
    await paid_once(sim, payment)
    await assert_ledger_clean(pool)


async def test_forged_webhook_is_refused_and_changes_nothing(api, settings, pool, driver, sim):
    before = await _inbox_rows(pool, driver.connector)
    for headers in ({}, {"Stripe-Signature": "t=1,v1=00", "PAYPAL-TRANSMISSION-SIG": "AAAA",
                         "X-Signature": "00" * 32}):
        resp = await api.post(f"/psp/webhooks/{driver.connector}", data=b'{"id": "evt_forged", "type": "x"}',
                              headers={"Content-Type": "application/json", **headers})
        assert resp.status in (400, 401), (resp.status, await resp.text())
        assert (await resp.json())["error"]["code"]
    assert await _inbox_rows(pool, driver.connector) == before


async def test_duplicate_webhooks_apply_once(api, settings, pool, driver, sim):
    """Every event delivered twice: each payment still posts once."""
    await sim.webhooks(url=str(api.make_url(f"/psp/webhooks/{driver.connector}")), duplicate=True)
    option, token = driver.pending_ok or (driver.option, driver.payin_ok)
    user = new_user(driver.connector)
    status, body = await pay_via(api, settings, driver, user, kind="payin", option=option, token=token,
                                 amount="12.00", wait_s=1)
    payment = await drive(api, settings, pool, sim, driver, user, body["payment_id"])
    assert payment["status"] == "succeeded", payment
    await paid_once(sim, payment)
    await assert_ledger_clean(pool)


async def test_pending_payin_settles_when_the_rail_does(api, settings, pool, driver, sim):
    if driver.pending_ok is None:
        pytest.skip(f"{driver.connector} has no pending (ACH-like) instrument")
    option, token = driver.pending_ok
    user = new_user(driver.connector)
    status, body = await pay_via(api, settings, driver, user, kind="payin", option=option, token=token,
                                 amount="60.00", wait_s=1)
    assert status in (201, 202) and body["status"] in ("processing", "requires_action"), body
    payment = await drive(api, settings, pool, sim, driver, user, body["payment_id"])
    assert payment["status"] == "succeeded", payment
    await paid_once(sim, payment)
    await assert_ledger_clean(pool)


async def test_out_of_order_webhooks_end_in_the_right_state(api, settings, pool, driver, sim):
    if driver.pending_ok is None:
        pytest.skip(f"{driver.connector} has no pending instrument to make several events of one payment")
    await sim.webhooks(url=str(api.make_url(f"/psp/webhooks/{driver.connector}")), out_of_order=True)
    option, token = driver.pending_ok
    user = new_user(driver.connector)
    status, body = await pay_via(api, settings, driver, user, kind="payin", option=option, token=token,
                                 amount="44.00", wait_s=1)

    async def flushing():  # newest first: the success arrives before the events that preceded it
        while True:
            await sim.flush_webhooks()
            await asyncio.sleep(0.2)

    flusher = asyncio.ensure_future(flushing())
    try:
        payment = await drive(api, settings, pool, sim, driver, user, body["payment_id"])
    finally:
        flusher.cancel()
    assert payment["status"] == "succeeded", payment
    await paid_once(sim, payment)
    await assert_ledger_clean(pool)


async def test_late_return_after_success_is_taken_back(api, settings, pool, driver, sim):
    if driver.late_return is None:
        pytest.skip(f"{driver.connector} has no instrument that is returned after success")
    option, token = driver.late_return
    user = new_user(driver.connector)
    status, body = await pay_via(api, settings, driver, user, kind="payin", option=option, token=token,
                                 amount="50.00", wait_s=1)
    payment = await drive(api, settings, pool, sim, driver, user, body["payment_id"])
    assert payment["status"] == "succeeded", payment
    await sim.advance(driver.return_after_s)

    async def returned():
        resp = await api.get(f"/payments/payment/v1/{body['payment_id']}", headers=auth_header(settings, user))
        got = await resp.json()
        return got if got["status"] != "succeeded" else None

    after = await wait_until(returned, timeout_s=45, interval_s=0.2)
    assert after and after["status"] in ("returned", "needs_attention"), after
    wallet = await api.get("/payments/wallet/v1", headers=auth_header(settings, user))
    balances = {b["currency"]: b["available"] for b in (await wallet.json())["balances"]}
    assert balances.get(driver.currency, "0.00") == "0.00", balances
    await assert_ledger_clean(pool)


async def _inbox_rows(pool, connector: str) -> int:
    async with pool.acquire() as conn:
        return await conn.fetchval("SELECT count(*) FROM psp_event WHERE connector = $1", connector)


async def test_outage_opens_the_breaker_within_its_threshold_then_a_half_open_probe_closes_it(
        settings, driver, sim):
    """Through the connector's shared breaker (state in Redis; a database of its own here, so the
    suite's worker keeps routing): technical failures open it at the threshold, an open breaker
    refuses without calling the provider, declines never count, and after the reopen time one
    probe that the provider answers closes it. (Orders moving to the next connector while a
    breaker is open is tested with two test connectors in tests/router: a provider's token is
    valid only at that provider, so the same instrument cannot move between two providers.)"""
    import msgspec

    from paycell.psp.base import Charge, PspTransientError
    from paycell.psp.breakers import BreakerOpen, Breakers
    from paycell.psp.registry import adapter_for

    base, _, db = settings.redis_url.rpartition("/")
    own = msgspec.structs.replace(settings, redis_url=f"{base}/{int(db) + 5}", psp_breaker_failures_max=3,
                                  psp_breaker_reopen_s=1.0)
    import redis
    redis.Redis.from_url(own.redis_url).flushdb()
    breakers, psp = Breakers(own), adapter_for(driver.connector, own)

    def charge_of(token: str, option: str = driver.option, direction: str = "payin") -> Charge:
        return Charge(idempotency_key=str(uuid.uuid4()), direction=direction, amount_minor=20_00,
                      currency=driver.currency, instrument=token, payment_option=option, customer_ref="breaker-user")

    try:
        for token in driver.declines.values():  # answers, even unwelcome ones, are not failures
            await breakers.call(driver.connector, lambda t=token: psp.submit(charge_of(t)))
        assert await breakers.state(driver.connector) == "closed"
        await sim.faults(outage=True)
        for n in range(3):
            assert await breakers.state(driver.connector) == "closed", n
            with pytest.raises(PspTransientError):
                await breakers.call(driver.connector, lambda: psp.submit(charge_of(driver.payin_ok)))
        assert await breakers.state(driver.connector) == "opened"
        await sim.clear_faults()
        refused = charge_of(driver.payin_ok)
        with pytest.raises(BreakerOpen):
            await breakers.call(driver.connector, lambda: psp.submit(refused))
        assert await sim.charges_for(refused.idempotency_key) == []  # never reached the provider
        await asyncio.sleep(1.1)
        assert await breakers.state(driver.connector) == "half-opened"
        probe = charge_of(driver.payin_ok)
        result = await breakers.call(driver.connector, lambda: psp.submit(probe))
        assert result.status in ("succeeded", "pending", "requires_action"), result
        assert await breakers.state(driver.connector) == "closed"
        assert len(await sim.charges_for(probe.idempotency_key)) == 1
    finally:
        await psp.close()
        await breakers.close()


async def _paid_in(api, settings, pool, driver, sim, token: str, amount: str) -> tuple[str, dict]:
    """A new user's pay-in of `amount` from `token`, taken to its end: (the user, the payment)."""
    user = new_user(driver.connector)
    status, body = await pay_via(api, settings, driver, user, kind="payin", option=driver.option, token=token,
                                 amount=amount)
    assert status in (201, 202), body
    payment = await drive(api, settings, pool, sim, driver, user, body["payment_id"])
    assert payment["status"] == "succeeded", payment
    return user, payment


async def test_payin_is_refunded_in_part_then_the_rest_each_once(api, settings, pool, driver, sim):
    """Issue 13: an operator's refunds reach the provider once each, under the reversal's key, and
    the payment shows what was taken back; the ledger compensates each with a new transaction."""
    if not driver.refunds:
        pytest.skip(f"{driver.connector} has no refunds here")
    user, payment = await _paid_in(api, settings, pool, driver, sim, driver.payin_ok, "25.00")
    order_id = payment["orders"][0]["payment_order_id"]
    settling = dict(sim=sim, settle_after_s=driver.refund_settle_after_s, pool=pool)
    part = await reverse(api, settings, user, payment["payment_id"], "10.00", driver.currency, **settling)
    assert part["status"] == "succeeded", part
    rest = await reverse(api, settings, user, payment["payment_id"], "15.00", driver.currency, **settling)
    assert rest["status"] == "succeeded", rest
    refunds = await sim.refunds_for(order_id)
    assert sorted((r["key"], r["amount_minor"]) for r in refunds) == sorted(
        [(part["reversal_id"], 10_00), (rest["reversal_id"], 15_00)]), refunds
    assert {r["reference"] for r in refunds} == {part["psp_reference"], rest["psp_reference"]}
    shown = await (await api.get(f"/payments/payment/v1/{payment['payment_id']}",
                                 headers=auth_header(settings, user))).json()
    assert (shown["status"], shown["refunded"]) == ("refunded", "25.00"), shown
    # The provider's own webhooks about these refunds (PayPal's PAYMENT.CAPTURE.REFUNDED, Adyen's
    # REFUND, the bank's credit) are not returns: nothing is taken back twice.
    await asyncio.sleep(1.5)
    assert await postings_of(pool, order_id) == ["payin_settle", "payin_refund", "payin_refund"]
    await assert_ledger_clean(pool)


async def test_a_refund_the_provider_refuses_fails_and_leaves_the_payment_whole(api, settings, pool, driver, sim):
    if driver.refund_refused is None:
        pytest.skip(f"{driver.connector}'s simulator has no instrument whose refunds it refuses")
    user, payment = await _paid_in(api, settings, pool, driver, sim, driver.refund_refused, "9.00")
    ended = await reverse(api, settings, user, payment["payment_id"], "9.00", driver.currency)
    assert ended["status"] == "failed" and ended["failure_code"], ended
    shown = await (await api.get(f"/payments/payment/v1/{payment['payment_id']}",
                                 headers=auth_header(settings, user))).json()
    assert (shown["status"], shown["refunded"]) == ("succeeded", "0.00"), shown
    assert await postings_of(pool, payment["orders"][0]["payment_order_id"]) == ["payin_settle"]
    await assert_ledger_clean(pool)


async def test_a_refund_whose_answer_is_lost_is_asked_about_and_made_once(api, settings, pool, driver, sim):
    if not driver.refunds:
        pytest.skip(f"{driver.connector} has no refunds here")
    user, payment = await _paid_in(api, settings, pool, driver, sim, driver.payin_ok, "12.00")
    await sim.faults(drop_after_charge=1)  # the refund is made; its answer never arrives
    try:
        ended = await reverse(api, settings, user, payment["payment_id"], "12.00", driver.currency, sim=sim,
                              settle_after_s=driver.refund_settle_after_s, pool=pool)
    finally:
        await sim.clear_faults()
    assert ended["status"] == "succeeded", ended
    refunds = await sim.refunds_for(payment["orders"][0]["payment_order_id"])
    assert [(r["key"], r["amount_minor"]) for r in refunds] == [(ended["reversal_id"], 12_00)], refunds
    await assert_ledger_clean(pool)


async def test_payout_is_recalled_once(api, settings, pool, driver, sim):
    if not driver.recalls_payouts:
        pytest.skip(f"{driver.connector} cannot recall a pay-out here")
    user = new_user(driver.connector)
    assert (await pay(api, settings, user, "tok_card_ok", f"wallet:{user}", "40.00", "card", wait_s=10))[0] == 201
    status, body = await pay_via(api, settings, driver, user, kind="payout", option=driver.option,
                                 token=driver.payout_ok, amount="15.00", wait_s=1)
    payment = await drive(api, settings, pool, sim, driver, user, body["payment_id"])
    assert payment["status"] == "succeeded", payment
    ended = await reverse(api, settings, user, payment["payment_id"], "15.00", driver.currency)
    assert ended["status"] == "succeeded", ended
    refunds = await sim.refunds_for(payment["orders"][0]["payment_order_id"])
    assert [(r["key"], r["amount_minor"]) for r in refunds] == [(ended["reversal_id"], 15_00)], refunds
    shown = await (await api.get(f"/payments/payment/v1/{payment['payment_id']}",
                                 headers=auth_header(settings, user))).json()
    assert (shown["status"], shown["refunded"]) == ("reversed", "15.00"), shown
    await assert_ledger_clean(pool)
