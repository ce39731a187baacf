"""Each provider's report, as its simulator writes it, read by column name into paycell's lines;
and every malformed file refused with a typed error that stores nothing."""
from __future__ import annotations

import datetime
import io
import time

import pytest

from paycell.errors import SettlementFileRejected
from paycell.psp.adyen import sim_report
from paycell.psp.paypal import report as paypal_report
from paycell.psp.paypal.sim_world import Movement
from paycell.reconcile import adyen_settlement, paypal_stl, settlement, stripe_itemized
from tests.reconcile.conftest import paid, stripe_file, stripe_txn, window

TODAY = datetime.datetime.now(datetime.timezone.utc).date()


def _lines(parse, body: bytes):
    return list(parse(io.TextIOWrapper(io.BytesIO(body), encoding="utf-8-sig", newline="")))


def test_stripe_major_units_become_exact_minor_units_by_the_currency_exponent():
    head = "balance_transaction_id,created_utc,currency,gross,fee,net,reporting_category,payment_intent_id\n"
    body = (head + "txn_1,2026-11-25 10:00:00,usd,12.30,0.66,11.64,charge,pi_1\n"
            "txn_2,2026-11-25 10:00:01,jpy,1230,0,1230,charge,pi_2\n"
            "txn_3,2026-11-25 10:00:02,kwd,1.005,0.000,1.005,charge,pi_3\n"
            "txn_4,2026-11-25 10:00:03,usd,-25.00,15.00,-40.00,dispute,pi_1\n").encode()
    lines = _lines(stripe_itemized.parse, body)
    assert [(ln.category, ln.amount_minor, ln.currency, ln.fee_minor) for ln in lines] == [
        ("payin", 1230, "USD", 66), ("payin", 1230, "JPY", 0), ("payin", 1005, "KWD", 0), ("return", 2500, "USD", 1500)]


def test_adyen_columns_are_found_by_name_in_any_order():
    entries = [sim_report.Entry(at_s=time.time(), type="Settled", psp_reference="8815", merchant_reference="ord-1",
                                modification_reference="", currency="EUR", credit_minor=10_00, commission_minor=10)]
    body = sim_report.report(entries, TODAY, "PaycellSimECOM")
    rows = list(__import__("csv").reader(io.StringIO(body.decode())))
    reordered = io.StringIO()
    w = __import__("csv").writer(reordered, lineterminator="\n")
    for r in rows:
        w.writerow(list(reversed(r)) + ["extra"] if r is rows[0] else list(reversed(r)) + [""])
    for data in (body, reordered.getvalue().encode()):
        lines = _lines(adyen_settlement.parse, data)
        assert [(ln.category, ln.psp_reference, ln.order_ref, ln.amount_minor, ln.fee_minor, ln.currency)
                for ln in lines] == [("payin", "8815", "ord-1", 10_00, 10, "EUR"), ("transfer_out", None, None, 9_90, 0,
                                                                                     "EUR")]


def _stl(movements) -> bytes:
    return paypal_report.stl(TODAY, movements, "SIMACCOUNT", time.time())


def _movement(**kw) -> Movement:
    base = dict(at_s=time.time(), transaction_id="TX1", invoice_id="ord-1", reference_id="PAYPAL-ORDER-1",
                event_code="T0006", credit=True, gross_minor=1230, fee_minor=66, fee_credit=False, currency="USD")
    return Movement(**{**base, **kw})


def test_paypal_stl_records_are_read_with_their_signs_and_footers_checked():
    body = _stl([_movement(), _movement(transaction_id="TX2", invoice_id="ord-2", event_code="T0001", credit=False,
                                        gross_minor=500, fee_minor=0)])
    lines = _lines(paypal_stl.parse, body)
    assert [(ln.category, ln.psp_reference, ln.order_ref, ln.amount_minor, ln.fee_minor) for ln in lines] == [
        ("payin", "PAYPAL-ORDER-1", "ord-1", 1230, 66), ("payout", "PAYPAL-ORDER-1", "ord-2", 500, 0)]
    cut = body[:body.index(b'"RC"')]
    with pytest.raises(SettlementFileRejected) as truncated:
        _lines(paypal_stl.parse, cut)
    assert truncated.value.code == "settlement_file_truncated"
    tampered = body.replace(b'"1230"', b'"1231"', 1)
    with pytest.raises(SettlementFileRejected, match="totals differ"):
        _lines(paypal_stl.parse, tampered)


HEADER = ("balance_transaction_id,created_utc,available_on_utc,currency,gross,fee,net,reporting_category,description,"
          "charge_id,payment_intent_id,payment_metadata[paycell_order_id]\n")


@pytest.mark.parametrize("name,body,code", [
    ("bad_csv", HEADER + 'txn_1,2026-11-25 10:00:00,,usd,"12.30,0.66,11.64,charge,x,ch,pi,o\n',
     "settlement_file_malformed"),
    ("missing_column", "balance_transaction_id,created_utc,currency,gross,fee,reporting_category\n"
     "txn_1,2026-11-25 10:00:00,usd,12.30,0.66,charge\n", "settlement_file_columns"),
    ("unknown_columns_only", "id,date,amount\n1,2026-11-25,12.30\n", "settlement_file_columns"),
    ("wrong_currency", HEADER + "txn_1,2026-11-25 10:00:00,,usx,12.30,0.66,11.64,charge,x,ch,pi,o\n",
     "settlement_file_currency"),
    ("too_many_decimals", HEADER + "txn_1,2026-11-25 10:00:00,,jpy,12.30,0,12.30,charge,x,ch,pi,o\n",
     "settlement_file_malformed"),
    ("truncated", HEADER + "txn_1,2026-11-25 10:00:00,,usd,12.30,0.66,11.64,charge,x,ch,pi,o\ntxn_2,2026-11-25 1",
     "settlement_file_truncated"),
    ("net_disagrees", HEADER + "txn_1,2026-11-25 10:00:00,,usd,12.30,0.66,11.00,charge,x,ch,pi,o\n",
     "settlement_file_malformed"),
    ("empty", "", "settlement_file_columns"),
])
async def test_a_malformed_file_is_refused_with_its_code_and_changes_nothing(ctx, pool, tmp_path, name, body, code):
    path = tmp_path / f"{name}.csv"
    path.write_text(body)
    before = await _counts(pool)
    with pytest.raises(SettlementFileRejected) as refused:
        await settlement.reconcile_file(ctx, "stripe", path)
    assert refused.value.code == code, refused.value
    assert await _counts(pool) == before


async def test_a_100_mb_file_is_refused_cleanly_over_the_size_limit_and_as_junk_under_it(ctx, pool, tmp_path):
    path = tmp_path / "big.csv"
    with open(path, "wb") as f:
        f.write(HEADER.encode() + b"txn_1," + b"9" * (100 * 1024 * 1024) + b"\n")
    before = await _counts(pool)
    with pytest.raises(SettlementFileRejected) as over:
        await settlement.reconcile_file(ctx, "stripe", path, bytes_max=64 * 1024 * 1024)
    assert over.value.code == "settlement_file_too_large"
    with pytest.raises(SettlementFileRejected) as junk:
        await settlement.reconcile_file(ctx, "stripe", path)
    assert junk.value.code == "settlement_file_malformed" and "field larger than field limit" in junk.value.message
    assert await _counts(pool) == before


async def test_a_file_that_fails_after_good_lines_leaves_nothing_behind(ctx, pool, tmp_path, since):
    good = await paid(pool, "stripe", 11_00)
    path = stripe_file(tmp_path, [stripe_txn(good)])
    path.write_bytes(path.read_bytes() + b"txn_x,2026-11-25 10:00:00,,usd,1.00,0.00,1.00,charge,x,ch,pi\n")
    before = await _counts(pool)
    with pytest.raises(SettlementFileRejected):
        await settlement.reconcile_file(ctx, "stripe", path, period=window(since))
    assert await _counts(pool) == before


async def _counts(pool) -> tuple:
    return tuple(await pool.fetchrow("""SELECT (SELECT count(*) FROM recon_run), (SELECT count(*) FROM recon_file),
                                               (SELECT count(*) FROM recon_line), (SELECT count(*) FROM recon_break),
                                               (SELECT count(*) FROM ledger_transaction)"""))
