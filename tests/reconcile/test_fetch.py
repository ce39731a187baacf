"""Reports fetched where each provider hands them over, from the simulators over HTTP: Stripe's
Reporting API (a report run and its result file), Adyen's report download; refusals are typed."""
from __future__ import annotations

import datetime

import aiohttp
import msgspec
import pytest

from paycell.errors import SettlementFileRejected
from paycell.psp.adyen.sim_report import BATCH_EPOCH
from paycell.reconcile import fetch

TODAY = datetime.datetime.now(datetime.timezone.utc).date()


async def test_stripe_runs_the_report_for_a_day_and_serves_its_file_with_the_key(settings, psp_sim, tmp_path):
    path = await fetch.download(settings, "stripe", TODAY, tmp_path)
    assert path.read_bytes().startswith(b"balance_transaction_id,created_utc,available_on_utc,currency,gross,fee,net")
    base, key = settings.stripe_api_base_url, {"Authorization": f"Bearer {settings.stripe_api_key}"}
    start = int(datetime.datetime.combine(TODAY, datetime.time(), datetime.timezone.utc).timestamp())
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/v1/reporting/report_runs", headers=key, data={
                "report_type": fetch.STRIPE_REPORT, "parameters[interval_start]": str(start),
                "parameters[interval_end]": str(start + 3_600)}) as r:
            assert r.status == 400 and (await r.json())["error"]["param"] == "parameters[interval_end]"
        async with http.post(f"{base}/v1/reporting/report_runs", headers=key, data={
                "report_type": fetch.STRIPE_REPORT, "parameters[interval_start]": str(start),
                "parameters[interval_end]": str(start + 86_400)}) as r:
            run = msgspec.json.decode(await r.read())
        assert run["object"] == "reporting.report_run" and run["status"] == "succeeded"
        async with http.get(run["result"]["url"]) as r:
            assert r.status == 401  # the file, like the API, needs the secret key
        async with http.get(f"{base}/v1/files/file_nope/contents", headers=key) as r:
            assert r.status == 404


async def test_adyen_serves_a_days_batch_to_the_api_key_only(settings, psp_sim, tmp_path):
    path = await fetch.download(settings, "adyen", TODAY, tmp_path)
    assert path.read_bytes().startswith(b"Company Account,Merchant Account,Psp Reference")
    root = settings.adyen_checkout_base_url.rsplit("/checkout/", 1)[0]
    url = (f"{root}/reports/download/MerchantAccount/{settings.adyen_merchant_account}/"
           f"settlement_detail_report_batch_{(TODAY - BATCH_EPOCH).days}.csv")
    async with aiohttp.ClientSession() as http, http.get(url, headers={"X-API-Key": "wrong"}) as r:
        assert r.status == 401


async def test_a_report_over_the_size_limit_is_refused_while_it_streams(settings, psp_sim, tmp_path):
    with pytest.raises(SettlementFileRejected) as refused:
        await fetch.download(settings, "stripe", TODAY, tmp_path, bytes_max=10)
    assert refused.value.code == "settlement_file_too_large"
    assert list(tmp_path.iterdir()) == []
