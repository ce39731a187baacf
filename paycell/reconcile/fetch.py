"""Each provider's settlement report of one UTC day, downloaded to a local file for the parser,
the way the provider hands it over (against the simulators, which serve the same routes):

    stripe  the Reporting API: POST /v1/reporting/report_runs (balance_change_from_activity.itemized.3
            over the day), GET the run until it has succeeded, then GET its result file's URL, all
            with the secret key
    adyen   the Customer Area's report download: GET /reports/download/MerchantAccount/<account>/
            settlement_detail_report_batch_<n>.csv (one batch per day; the simulator numbers batches
            by day and takes the API key where Adyen takes a report user's credentials)
    paypal  PayPal drops the STL file on its SFTP server; the simulator serves the same bytes at
            <root>/_sim/reports?date=, the one route here that stands in for another transport

The body is streamed to a temporary file in bounded chunks and refused past the size limit.
"""
from __future__ import annotations

import asyncio
import datetime
import tempfile
from pathlib import Path

import aiohttp
from yarl import URL

from paycell.config import Settings
from paycell.errors import SettlementFileRejected, UnknownConnector
from paycell.psp.adyen.sim_report import BATCH_EPOCH
from paycell.reconcile.formats import FILE_BYTES_MAX, TOO_LARGE
from paycell.tls import client as tls_client

CHUNK_BYTES = 1 << 16
TIMEOUT_S = 120
RUN_POLLS_MAX = 60
RUN_POLL_INTERVAL_S = 2.0
STRIPE_REPORT = "balance_change_from_activity.itemized.3"
STRIPE_COLUMNS = ("balance_transaction_id", "created_utc", "available_on_utc", "currency", "gross", "fee", "net",
                  "reporting_category", "description", "charge_id", "payment_intent_id",
                  "payment_metadata[paycell_order_id]")


class ReportUnavailable(Exception):
    """The provider did not hand over the day's report (unreachable, an error status, not ready)."""


async def download(settings: Settings, connector: str, day: datetime.date, directory: Path, *,
                   bytes_max: int = FILE_BYTES_MAX) -> Path:
    """The day's report of `connector` saved under `directory`; its path."""
    target = Path(tempfile.mkstemp(prefix=f"{connector}-{day.isoformat()}-", suffix=".csv", dir=directory)[1])
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    try:
        # The connector's own TLS (its pins too): the report comes from the same provider.
        async with tls_client.session(tls_client.for_connector(settings, connector), timeout=timeout) as http:
            if connector == "stripe":
                url, headers = await _stripe_file(http, settings, day)
            elif connector == "adyen":
                root = str(URL(settings.adyen_checkout_base_url).parent.parent).rstrip("/")  # .../checkout/v71
                batch = (day - BATCH_EPOCH).days
                url = (f"{root}/reports/download/MerchantAccount/{settings.adyen_merchant_account}/"
                       f"settlement_detail_report_batch_{batch}.csv")
                headers = {"X-API-Key": settings.adyen_api_key}
            elif connector == "paypal":
                url = str(URL(f"{settings.paypal_api_base_url.rstrip('/')}/_sim/reports").with_query(
                    date=day.isoformat()))
                headers = {}
            else:
                raise UnknownConnector(f"no settlement report source for connector {connector!r}")
            await _save(http, url, headers, target, bytes_max=bytes_max, what=f"{connector}'s report of {day}")
    except aiohttp.ClientError as exc:
        target.unlink(missing_ok=True)
        raise ReportUnavailable(f"{connector}'s report of {day} could not be fetched: {exc}") from None
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


async def _stripe_file(http: aiohttp.ClientSession, settings: Settings, day: datetime.date) -> tuple[str, dict]:
    base = settings.stripe_api_base_url.rstrip("/")
    headers = {"Authorization": f"Bearer {settings.stripe_api_key}"}
    start = int(datetime.datetime.combine(day, datetime.time(), datetime.timezone.utc).timestamp())
    form = {"report_type": STRIPE_REPORT, "parameters[interval_start]": str(start),
            "parameters[interval_end]": str(start + 86_400),
            **{f"parameters[columns][{i}]": c for i, c in enumerate(STRIPE_COLUMNS)}}
    async with http.post(f"{base}/v1/reporting/report_runs", data=form, headers=headers) as response:
        run = await _json(response, "Stripe's report run")
    for _ in range(RUN_POLLS_MAX):
        if run.get("status") == "succeeded":
            return run["result"]["url"], headers
        if run.get("status") == "failed":
            raise ReportUnavailable(f"Stripe's report run {run.get('id')} failed: {run.get('error')}")
        await asyncio.sleep(RUN_POLL_INTERVAL_S)
        async with http.get(f"{base}/v1/reporting/report_runs/{run['id']}", headers=headers) as response:
            run = await _json(response, "Stripe's report run")
    raise ReportUnavailable(f"Stripe's report run {run.get('id')} did not succeed in time")


async def _json(response: aiohttp.ClientResponse, what: str) -> dict:
    if response.status != 200:
        raise ReportUnavailable(f"{what} answered {response.status}: {(await response.text())[:200]}")
    return await response.json()


async def _save(http: aiohttp.ClientSession, url: str, headers: dict, target: Path, *, bytes_max: int,
                what: str) -> None:
    size = 0
    async with http.get(url, headers=headers) as response:
        if response.status != 200:
            raise ReportUnavailable(f"{what}: {response.status} from {URL(url).with_query(None)}")
        with open(target, "wb") as out:
            async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                size += len(chunk)
                if size > bytes_max:
                    raise SettlementFileRejected(f"{what} exceeds {bytes_max} bytes", code=TOO_LARGE)
                out.write(chunk)
