"""The TLS context of every outbound hop: certificates verified (the system's CAs, plus
PAYCELL_TLS_CA_FILE for a private CA), the host name checked, TLS 1.2 at least, revoked
certificates refused when PAYCELL_TLS_CRL_FILE holds CRLs, and a connector's pins (pinning.py)
when it has any.

aiohttp's own default context verifies too; paycell passes its own so that the floor, the extra CA
and the pins are the same on every hop, stated once. Contexts are cached per (CA file, connector,
pins): building one reads the system's CA store, and a context may be shared by sessions on any
event loop.
"""
from __future__ import annotations

import functools
import ssl

import aiohttp

from paycell.config import Settings
from paycell.tls.pinning import parse_pins, pinned_object_class

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


@functools.lru_cache(maxsize=64)
def context(ca_file: str = "", connector: str = "", pins: tuple[str, ...] = (), crl_file: str = "") -> ssl.SSLContext:
    """A verifying client context; with `pins`, one whose handshakes also check `connector`'s pins;
    with `crl_file`, one that refuses a peer certificate those CRLs revoke."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
    if crl_file:
        ctx.load_verify_locations(cafile=crl_file)  # OpenSSL reads the CRLs of a PEM file here
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    ctx.minimum_version = MINIMUM_VERSION
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    if pins:
        ctx.sslobject_class = pinned_object_class(connector, pins)
    return ctx


def for_connector(settings: Settings, connector: str) -> ssl.SSLContext:
    """The context of `connector`'s hops (its API, and what it fetches from its provider)."""
    pins = settings.psp_tls_pins.get(connector)
    return context(settings.tls_ca_file, connector, parse_pins(pins) if pins else (), settings.tls_crl_file)


def session(tls: ssl.SSLContext, **options) -> aiohttp.ClientSession:
    """An aiohttp session whose https connections all use `tls` (call it on the loop that uses it)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls), **options)


def redis_options(url: str, settings: Settings) -> dict:
    """redis-py keyword arguments for `url`: for rediss://, certificate and host name verified
    (system CAs plus PAYCELL_TLS_CA_FILE), TLS 1.2 at least; none for redis:// and unix://
    (a plain connection takes no ssl_* argument). Options written in the URL's query win over
    these in redis-py; production refuses a URL that weakens them (hops.py)."""
    if not url.startswith("rediss://"):
        return {}
    return {"ssl_cert_reqs": "required", "ssl_check_hostname": True, "ssl_min_version": MINIMUM_VERSION,
            "ssl_ca_certs": settings.tls_ca_file or None}
