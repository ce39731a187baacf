"""PayPal webhooks: offline signature verification and the events paycell acts on.

PayPal signs `transmission_id|transmission_time|webhook_id|crc32` (crc32 of the raw body as an
unsigned decimal) with RSA PKCS#1 v1.5 and SHA-256 (PAYPAL-AUTH-ALGO "SHA256withRSA"), base64 in
PAYPAL-TRANSMISSION-SIG, and names its certificate in PAYPAL-CERT-URL. paycell checks the
signature itself instead of calling verify-webhook-signature (one round trip per event, and an
outage of that API would stall every webhook):
- the certificate is fetched only over https and only from a host in `paypal_cert_hosts`; plain
  http is accepted for a loopback host alone (127.0.0.1, ::1, localhost: the simulator), never
  for a remote one. Redirects are not followed. The answer is bounded (`CERT_BYTES_MAX`).
- a fetched certificate is cached by URL (`CERTS_MAX` entries, `CERT_CACHE_TTL_S`), and its
  notValidBefore/notValidAfter are checked on every use. Its chain is not walked: the https
  connection to an allow-listed PayPal host is the trust anchor (as PayPal's own SDKs do).
- a transmission older than `TRANSMISSION_AGE_S_MAX` (15 minutes) or more than
  `TRANSMISSION_AHEAD_S_MAX` (5 minutes) in the future is stale: PayPal signs every delivery
  attempt anew, so an honest one is seconds old; an old one is a replay.
- the webhook id is paycell's own (PAYCELL_PAYPAL_WEBHOOK_ID): an event signed for another
  listener does not verify.
"""
from __future__ import annotations

import base64
import binascii
import datetime
import ipaddress
import time
import zlib
from collections.abc import Callable, Mapping

import aiohttp
import cachetools
import msgspec
import structlog
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from yarl import URL

from paycell import money
from paycell.psp.base import PspResult, WebhookEvent, WebhookRejected
from paycell.psp.paypal import wire

log = structlog.get_logger("paycell.psp.paypal.webhooks")

AUTH_ALGO = "SHA256withRSA"
TRANSMISSION_AGE_S_MAX = 900.0
TRANSMISSION_AHEAD_S_MAX = 300.0
CERTS_MAX = 16
CERT_CACHE_TTL_S = 6 * 3600.0
CERT_BYTES_MAX = 64 * 1024
AMOUNT_MINOR_MAX = 10**15
LOOPBACK_NAMES = frozenset({"localhost"})

_HEADERS = ("paypal-transmission-id", "paypal-transmission-time", "paypal-transmission-sig",
            "paypal-cert-url", "paypal-auth-algo")

_CAPTURE_EVENTS = {
    "PAYMENT.CAPTURE.COMPLETED": ("succeeded", None),
    "PAYMENT.CAPTURE.PENDING": ("pending", None),
    "PAYMENT.CAPTURE.DENIED": ("declined", "capture_denied"),
    "PAYMENT.CAPTURE.DECLINED": ("declined", "capture_declined"),
}
_RETURN_EVENTS = {
    "PAYMENT.CAPTURE.REFUNDED": "paypal_refunded",
    "PAYMENT.CAPTURE.REVERSED": "paypal_reversed",
}
_PAYOUT_EVENTS = {
    "PAYMENT.PAYOUTS-ITEM.SUCCEEDED": ("succeeded", None),
    "PAYMENT.PAYOUTS-ITEM.FAILED": ("declined", "payout_failed"),
    "PAYMENT.PAYOUTS-ITEM.RETURNED": ("declined", "payout_returned"),
    "PAYMENT.PAYOUTS-ITEM.BLOCKED": ("declined", "payout_blocked"),
    "PAYMENT.PAYOUTS-ITEM.REFUNDED": ("declined", "payout_refunded"),
    "PAYMENT.PAYOUTS-ITEM.DENIED": ("declined", "payout_denied"),
    "PAYMENT.PAYOUTS-ITEM.CANCELED": ("declined", "payout_canceled"),
    "PAYMENT.PAYOUTS-ITEM.UNCLAIMED": ("pending", None),
    "PAYMENT.PAYOUTS-ITEM.HELD": ("pending", None),
}


class WebhookVerifier:
    def __init__(self, webhook_id: str, cert_hosts: tuple[str, ...],
                 session: Callable[[], aiohttp.ClientSession], timeout_s: float) -> None:
        self.webhook_id = webhook_id
        self.cert_hosts = frozenset(h.lower() for h in cert_hosts)
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._certs: cachetools.TTLCache[str, x509.Certificate] = cachetools.TTLCache(CERTS_MAX, CERT_CACHE_TTL_S)
        self.certs_fetched = 0

    async def verify(self, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
        if not self.webhook_id:
            raise WebhookRejected("paypal: no webhook id configured (PAYCELL_PAYPAL_WEBHOOK_ID)")
        sent = {k.lower(): v for k, v in headers.items() if k.lower() in _HEADERS}
        absent = [h for h in _HEADERS if not sent.get(h)]
        if absent:
            raise WebhookRejected(f"paypal: missing headers {absent}")
        if sent["paypal-auth-algo"] != AUTH_ALGO:
            raise WebhookRejected(f"paypal: unknown auth algo {sent['paypal-auth-algo'][:40]!r}")
        transmission_id, transmission_time = sent["paypal-transmission-id"], sent["paypal-transmission-time"]
        self._check_fresh(transmission_time)
        url = self._cert_url(sent["paypal-cert-url"])
        cert = await self._certificate(url)
        try:
            signature = base64.b64decode(sent["paypal-transmission-sig"], validate=True)
        except (binascii.Error, ValueError):
            raise WebhookRejected("paypal: the signature is not base64") from None
        message = f"{transmission_id}|{transmission_time}|{self.webhook_id}|{zlib.crc32(body)}".encode()
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise WebhookRejected("paypal: the certificate's key is not RSA")
        try:
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise WebhookRejected("paypal: signature does not verify") from None
        return [parse_event(body)]

    def _check_fresh(self, transmission_time: str) -> None:
        try:
            sent_at = datetime.datetime.fromisoformat(transmission_time)
        except ValueError:
            raise WebhookRejected(f"paypal: unreadable transmission time {transmission_time[:40]!r}") from None
        if sent_at.tzinfo is None:
            sent_at = sent_at.replace(tzinfo=datetime.timezone.utc)
        age_s = time.time() - sent_at.timestamp()
        if age_s > TRANSMISSION_AGE_S_MAX or age_s < -TRANSMISSION_AHEAD_S_MAX:
            raise WebhookRejected(f"paypal: stale transmission ({age_s:.0f} s old)")

    def _cert_url(self, raw: str) -> URL:
        try:
            url = URL(raw)
        except ValueError:
            raise WebhookRejected("paypal: unreadable certificate URL") from None
        host = (url.host or "").lower()
        if not url.absolute or host not in self.cert_hosts or url.user or url.password:
            raise WebhookRejected(f"paypal: certificate host {host[:80]!r} is not allow-listed")
        if url.scheme == "https" or (url.scheme == "http" and _loopback(host)):
            return url
        raise WebhookRejected(f"paypal: certificate URL scheme {url.scheme!r} refused for {host!r}")

    async def _certificate(self, url: URL) -> x509.Certificate:
        key = str(url)
        cert = self._certs.get(key)
        if cert is None:
            cert = await self._fetch(url)
            self._certs[key] = cert
        now = datetime.datetime.now(datetime.timezone.utc)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            self._certs.pop(key, None)
            raise WebhookRejected("paypal: the signing certificate is not valid now")
        return cert

    async def _fetch(self, url: URL) -> x509.Certificate:
        try:
            async with self._session().get(url, allow_redirects=False, timeout=self._timeout) as response:
                pem = await response.content.read(CERT_BYTES_MAX + 1)
                status = response.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise WebhookRejected(f"paypal: certificate unreachable: {type(exc).__name__}") from exc
        if status != 200 or len(pem) > CERT_BYTES_MAX:
            raise WebhookRejected(f"paypal: certificate fetch answered HTTP {status}")
        try:
            certs = x509.load_pem_x509_certificates(pem)
        except ValueError:
            raise WebhookRejected("paypal: the certificate is not PEM") from None
        self.certs_fetched += 1
        log.info("paypal.cert_fetched", url=str(url))
        return certs[0]  # the signing (leaf) certificate comes first; the rest is its chain


def _loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# --- the events ---------------------------------------------------------------------------------

def parse_event(body: bytes) -> WebhookEvent:
    """The paycell event for one authentic delivery's body."""
    try:
        envelope = msgspec.json.decode(body, type=wire.WebhookEnvelope)
    except msgspec.DecodeError as exc:
        raise WebhookRejected(f"paypal: unreadable event: {exc}") from None
    try:
        return _event(envelope)
    except msgspec.DecodeError as exc:
        raise WebhookRejected(f"paypal: unreadable {envelope.event_type} resource: {exc}") from None


def _event(envelope: wire.WebhookEnvelope) -> WebhookEvent:
    kind = envelope.event_type
    base = {"event_id": envelope.id, "type": kind, "occurred_at_s": _seconds(envelope.create_time)}
    if kind == "CHECKOUT.ORDER.APPROVED":
        order = msgspec.json.decode(envelope.resource, type=wire.Order)
        unit = order.purchase_units[0] if order.purchase_units else None
        order_id = unit and (unit.custom_id or unit.invoice_id or unit.reference_id)
        amount = _minor(unit.amount.value, unit.amount.currency_code) if unit else None
        return WebhookEvent(kind="approved", order_id=order_id, psp_reference=order.id, amount_minor=amount,
                            currency=unit.amount.currency_code if unit else None, **base)
    if kind in _CAPTURE_EVENTS:
        capture = msgspec.json.decode(envelope.resource, type=wire.Capture)
        status, code = _CAPTURE_EVENTS[kind]
        related = capture.supplementary_data.related_ids if capture.supplementary_data else None
        reference = (related.order_id if related else None) or capture.id
        if code is not None and capture.status_details and capture.status_details.reason:
            code = f"capture_{capture.status_details.reason.lower()}"
        return WebhookEvent(kind="outcome", order_id=capture.custom_id or capture.invoice_id, psp_reference=reference,
                            result=PspResult(status=status, psp_reference=reference, decline_code=code),
                            **_money(capture.amount), **base)
    if kind in _RETURN_EVENTS:
        refund = msgspec.json.decode(envelope.resource, type=wire.Refund)
        if (refund.custom_id or "").startswith(wire.REVERSAL_CUSTOM_ID_PREFIX):
            # A refund paycell asked for itself: its `reverse` step records it; not a return.
            return WebhookEvent(kind="ignored", **base)
        up = next((link.href for link in refund.links if link.rel == "up"), None)
        reference = up.rstrip("/").rsplit("/", 1)[-1] if up else refund.id  # the capture taken back
        return WebhookEvent(kind="returned", order_id=refund.custom_id or refund.invoice_id, psp_reference=reference,
                            return_code=_RETURN_EVENTS[kind], **_money(refund.amount), **base)
    if kind in _PAYOUT_EVENTS:
        item = msgspec.json.decode(envelope.resource, type=wire.PayoutItemDetails)
        status, code = _PAYOUT_EVENTS[kind]
        if code is not None and item.errors and item.errors.name:
            code = item.errors.name.lower()
        amount = item.payout_item.amount
        return WebhookEvent(kind="outcome", order_id=item.payout_item.sender_item_id or item.sender_batch_id,
                            psp_reference=item.payout_batch_id,
                            result=PspResult(status=status, psp_reference=item.payout_batch_id, decline_code=code),
                            amount_minor=_minor(amount.value, amount.currency), currency=amount.currency, **base)
    return WebhookEvent(kind="ignored", **base)


def _money(amount: wire.Amount | None) -> dict:
    if amount is None:
        return {}
    return {"amount_minor": _minor(amount.value, amount.currency_code), "currency": amount.currency_code}


def _minor(value: str, currency: str) -> int | None:
    try:
        return money.parse_amount(value, currency, max_minor=AMOUNT_MINOR_MAX)
    except money.MoneyError:
        return None  # a currency paycell does not know: the event still counts, without an amount


def _seconds(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        moment = datetime.datetime.fromisoformat(iso)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()
