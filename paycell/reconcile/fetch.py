"""Each provider's settlement report of one UTC day, downloaded to a local file for the parser.

Against the simulators (the only providers this build talks to) the report of a day is served
where each simulator keeps it, `<provider root>/_sim/reports?date=YYYY-MM-DD`, in the provider's
own format, built from what the simulator processed. The provider roots are the connectors'
configured base URLs. Real providers deliver the same bytes by other means (Stripe: a report run,
then its file's download URL; Adyen: the Customer Area's report download with a report user;
PayPal: its SFTP drop): only this module would change for them, never the parsers.

The body is streamed to a temporary file in bounded chunks and refused past the size limit.
"""
from __future__ import annotations

import datetime
import tempfile
from pathlib import Path

import aiohttp
from yarl import URL

from paycell.config import Settings
from paycell.errors import SettlementFileRejected, UnknownConnector
from paycell.reconcile.formats import FILE_BYTES_MAX, TOO_LARGE

CHUNK_BYTES = 1 << 16
TIMEOUT_S = 120


class ReportUnavailable(Exception):
    """The provider did not hand over the day's report (unreachable, or an error status)."""


def provider_root(settings: Settings, connector: str) -> str:
    roots = {
        "stripe": settings.stripe_api_base_url,
        "adyen": str(URL(settings.adyen_checkout_base_url).parent.parent),  # .../adyen/checkout/v71 -> .../adyen
        "paypal": settings.paypal_api_base_url,
    }
    try:
        return roots[connector].rstrip("/")
    except KeyError:
        raise UnknownConnector(f"no settlement report source for connector {connector!r}") from None


async def download(settings: Settings, connector: str, day: datetime.date, directory: Path, *,
                   bytes_max: int = FILE_BYTES_MAX) -> Path:
    """The day's report saved under `directory`; its path."""
    url = f"{provider_root(settings, connector)}/_sim/reports"
    target = Path(tempfile.mkstemp(prefix=f"{connector}-{day.isoformat()}-", suffix=".csv", dir=directory)[1])
    size = 0
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http, \
                http.get(url, params={"date": day.isoformat()}) as response:
            if response.status != 200:
                raise ReportUnavailable(f"{connector} answered {response.status} for the report of {day}")
            with open(target, "wb") as out:
                async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                    size += len(chunk)
                    if size > bytes_max:
                        raise SettlementFileRejected(f"the {connector} report of {day} exceeds {bytes_max} bytes",
                                                     code=TOO_LARGE)
                    out.write(chunk)
    except aiohttp.ClientError as exc:
        target.unlink(missing_ok=True)
        raise ReportUnavailable(f"{connector}'s report of {day} could not be fetched: {exc}") from None
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target
