"""The routing table and instrument references: which connector gets an order, which tokens
attach where, and which payments the gate lets in."""
from __future__ import annotations

import pytest

from paycell.config import SettingsError, load
from paycell.psp import registry, routing
from tests.api.support import INSTRUMENTS, call, error_of, post_payment
from tests.helpers import assert_ledger_clean, auth_header, new_user, payment_body
from tests.router.support import attach_on, attempts, finished, pay_in

pytestmark = pytest.mark.usefixtures("router_worker")


def test_the_route_is_chosen_per_option_then_currency_else_the_default(router_settings):
    s = router_settings
    assert routing.route(s, "card", "USD") == ("rt_a", "rt_b")
    assert routing.route(s, "card", "EUR") == ("rt_b", "rt_a")
    assert routing.route(s, "card", "GBP") == ("rt_c", "rt_b")
    assert routing.route(s, "bank_account", "JPY") == ("rt_dead", "rt_b")
    assert routing.route(s, "paypal", "USD") == ("test",)  # no entry: PAYCELL_PSP_DEFAULT
    assert routing.gate_names(s, "paypal", "USD") == ["test", "simulator"]  # rows attached before the rename


@pytest.mark.parametrize("routes, wrong", [
    ("card=stripe_x", "no connector named 'stripe_x'"),
    ("bitcoin=test", "'bitcoin' is not a payment option"),
    ("card/usd=test", "'usd' is not an ISO 4217"),
    ("card=", "names no connector"),
    ("card=test,test", "names a connector twice"),
    ("card=test;card=test", "routed twice"),
    ("card", "is not OPTION=connector"),
])
def test_a_routing_table_that_cannot_be_used_is_refused_at_load(routes, wrong):
    with pytest.raises(SettingsError) as caught:
        load({"PAYCELL_PSP_ROUTES": routes})
    assert str(caught.value).startswith("PAYCELL_PSP_ROUTES") and wrong in str(caught.value)


def test_the_simulator_connector_is_now_test_and_its_old_name_still_loads():
    assert load({}).psp_default == "test"
    assert load({"PAYCELL_PSP_DEFAULT": "simulator"}).psp_default == "test"
    assert routing.route(load({"PAYCELL_PSP_ROUTES": "card=simulator"}), "card", "USD") == ("test",)
    assert registry.registered("simulator") and registry.canonical("simulator") == "test"


@pytest.mark.parametrize("env, variable", [
    ({"PAYCELL_PSP_TEST_CONNECTORS": "rt_x:http://127.0.0.1:1"}, "PAYCELL_PSP_TEST_CONNECTORS"),
    ({"PAYCELL_PSP_ROUTES": "card=test"}, "PAYCELL_PSP_ROUTES"),
])
def test_production_refuses_test_connectors(env, variable):
    from tests.test_settings_security import PRODUCTION
    with pytest.raises(SettingsError) as caught:
        load({**PRODUCTION, **env, "PAYCELL_PSP_ROUTES": env.get("PAYCELL_PSP_ROUTES", "")})
    assert variable in str(caught.value)


def test_production_config_with_a_route_of_real_names_passes_the_router_checks(monkeypatch):
    from tests.test_settings_security import PRODUCTION
    monkeypatch.setitem(registry.CONNECTORS, "acme", "paycell.psp.simulated")  # stands for a merged provider
    assert routing.route(load({**PRODUCTION, "PAYCELL_PSP_ROUTES": "card=acme"}), "card", "USD") == ("acme",)


@pytest.mark.parametrize("body, status, code, field", [
    # the test connector issues tok_ tokens only: a Stripe-like id is not one of its tokens
    ({"token": "pm_1Q2w3E4r5T6y", "payment_option": "card", "connector": "rt_a"}, 422, "token_invalid", "token"),
    ({"token": "tok_card_ok", "payment_option": "paypal", "connector": "rt_b"}, 422, "payment_option_mismatch",
     "payment_option"),
    ({"token": "tok_card_ok", "payment_option": "card", "connector": "rt_zz"}, 422, "connector_unknown", "connector"),
    ({"token": "tok card ok", "payment_option": "card", "connector": "rt_a"}, 422, "token_invalid", "token"),
])
async def test_attaching_checks_the_token_with_the_chosen_connector(router_api, router_settings, pool, body,
                                                                   status, code, field):
    user = new_user()
    reply = await call(router_api, "POST", INSTRUMENTS, headers=auth_header(router_settings, user), json=body)
    assert error_of(reply) == (status, code) and reply.json["error"]["field"] == field
    assert await pool.fetchval("SELECT count(*) FROM instrument WHERE user_id = $1", user) == 0


async def test_attaching_on_each_connector_and_by_the_old_name(router_api, router_settings):
    user = new_user()
    headers = auth_header(router_settings, user)
    made = {}
    for connector in ("rt_b", "simulator", None):
        body = {"token": "tok_card_ok", "payment_option": "card"} | ({"connector": connector} if connector else {})
        reply = await call(router_api, "POST", INSTRUMENTS, headers=headers, json=body)
        assert reply.status == 201, reply.json
        made[connector] = reply.json["connector"]
    # `simulator` is stored as `test`; without a connector, the first routed for cards that issues such tokens
    assert made == {"rt_b": "rt_b", "simulator": "test", None: "rt_a"}


async def test_a_payment_names_any_token_attached_with_its_option_on_a_connector_of_its_route(
        router_api, router_settings, pool):
    user = new_user()
    await attach_on(router_api, router_settings, user, "tok_card_ok", "card", "test")
    body = payment_body(user, "tok_card_ok", f"wallet:{user}", "5.00", "card")
    reply = await post_payment(router_api, router_settings, user, body)  # card/USD is routed to rt_a, rt_b only
    assert error_of(reply) == (403, "forbidden") and reply.json["error"]["field"] == "from_acct"
    await attach_on(router_api, router_settings, user, "tok_card_ok", "card", "rt_b")
    payment_id = await pay_in(router_api, router_settings, user, "tok_card_ok", amount="5.00")
    view = await finished(router_api, router_settings, user, payment_id)
    # only rt_b holds the instrument: rt_a, first on the route, is skipped
    assert view["status"] == "succeeded" and view["orders"][0]["psp"] == "rt_b"
    assert attempts(view) == [("rt_b", "routed")]
    await assert_ledger_clean(pool)


async def test_a_token_no_connector_issues_is_refused_before_any_query(router_api, router_settings):
    user = new_user()
    for token, code in (("pm_1Q2w3E4r5T6y", "account_invalid"), ("tok_paypal_ok", "payment_option_mismatch")):
        reply = await post_payment(router_api, router_settings, user,
                                   payment_body(user, token, f"wallet:{user}", "1.00", "card"))
        assert error_of(reply) == (422, code), reply.json


@pytest.mark.parametrize("currency, expected", [("USD", "rt_a"), ("EUR", "rt_b")])
async def test_the_order_goes_to_the_first_connector_of_its_currencys_route(router_api, router_settings, pool,
                                                                           currency, expected):
    user = new_user()
    await attach_on(router_api, router_settings, user, "tok_card_ok", "card", "rt_a", "rt_b")
    payment_id = await pay_in(router_api, router_settings, user, "tok_card_ok", currency=currency)
    view = await finished(router_api, router_settings, user, payment_id)
    assert view["status"] == "succeeded" and view["orders"][0]["psp"] == expected
    assert attempts(view) == [(expected, "routed")]
    await assert_ledger_clean(pool)


def test_a_charge_carries_the_payments_option_the_user_the_return_url_and_the_known_reference(router_settings):
    from paycell.actors.charge import charge_for, later_candidates, next_candidate
    from paycell.workflow import Order
    order = Order(payment_order_id="5f0c6a52-7a8e-4a36-9d0e-0d5b1c1f7b11", payment_id="p", user_id="alice",
                  kind="payout", payment_option="bank_account", from_acct="wallet:alice", to_acct="tok_bank_ok",
                  amount_minor=12_34, currency="EUR", payment_order_status="psp_pending", ledger_updated=False,
                  wallet_updated=False, psp="rt_b", psp_reference="ch_123", attempt=2,
                  psp_candidates=["rt_dead", "rt_b", "rt_a"])
    charge = charge_for(order, router_settings.psp_return_url)
    assert (charge.idempotency_key, charge.direction, charge.amount_minor, charge.currency, charge.instrument) == (
        order.payment_order_id, "payout", 12_34, "EUR", "tok_bank_ok")
    assert (charge.payment_option, charge.customer_ref, charge.psp_reference) == ("bank_account", "alice", "ch_123")
    assert charge.return_url == f"{router_settings.psp_return_url}?user_id=alice&order_id={order.payment_order_id}"
    assert (later_candidates(order), next_candidate(order)) == (["rt_a"], "rt_a")
    last = Order(**{**{f: getattr(order, f) for f in order.__struct_fields__}, "psp": "rt_a"})
    assert (later_candidates(last), next_candidate(last)) == ([], None)


async def test_an_instrument_attached_as_simulator_before_the_rename_still_pays_on_test(
        router_api, router_settings, pool, psp_sim):
    """A row written before the rename names `simulator`: the gate and `screen` read it as `test`."""
    user = new_user()
    await call(router_api, "GET", "/payments/wallet/v1", headers=auth_header(router_settings, user))  # registers
    await pool.execute("""INSERT INTO instrument (user_id, instrument_id, connector, payment_option, provider_token)
                          VALUES ($1, gen_random_uuid(), 'simulator', 'paypal', 'tok_paypal_ok')""", user)
    payment_id = await pay_in(router_api, router_settings, user, "tok_paypal_ok", option="paypal", amount="3.00")
    view = await finished(router_api, router_settings, user, payment_id)
    assert view["status"] == "succeeded" and attempts(view) == [("test", "routed")]
    await assert_ledger_clean(pool)
