"""Where a request comes from: its client's IP address and country, for the risk rules.

The client is the TCP peer, unless the peer is a trusted proxy (PAYCELL_TRUSTED_PROXIES, CIDRs):
then X-Forwarded-For is read from the right, skipping trusted proxies, and the first address that
is not one is the client (the leftmost entries are whatever the client chose to send, so they are
never believed). The country comes only from a trusted proxy, in the header named by
PAYCELL_CLIENT_COUNTRY_HEADER (CDNs geolocate the address they saw: Cloudflare's CF-IPCountry,
CloudFront-Viewer-Country); a value that is not two letters (Cloudflare's XX for unknown, T1 for
Tor) is no country. Nothing here is a reason to refuse a request: what cannot be known is None.
"""
from __future__ import annotations

import functools
import ipaddress
import re

from aiohttp import web

from paycell.config import Settings

_COUNTRY = re.compile(r"[A-Za-z]{2}")
_NOT_COUNTRIES = frozenset({"XX", "T1"})
FORWARDED_HOPS_MAX = 16  # a longer X-Forwarded-For is read only this far from the right

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@functools.lru_cache(maxsize=8)
def _networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def _address(text: str | None) -> Address | None:
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def client_of(request: web.Request, settings: Settings) -> tuple[str | None, str | None]:
    """(client IP as text, ISO 3166-1 alpha-2 country) of `request`; either may be None."""
    peer = _address(request.remote)
    if peer is None:
        return None, None
    trusted = _networks(settings.trusted_proxies)
    if not trusted or not any(peer in net for net in trusted):
        return str(peer), None
    client = peer
    hops = [h for value in request.headers.getall("X-Forwarded-For", []) for h in value.split(",")]
    for hop in reversed(hops[-FORWARDED_HOPS_MAX:]):
        address = _address(hop)
        if address is None:
            break  # a malformed hop: nothing left of it can be believed
        client = address
        if not any(address in net for net in trusted):
            break
    country = None
    if settings.client_country_header:
        value = request.headers.get(settings.client_country_header, "").strip()
        if _COUNTRY.fullmatch(value) and value.upper() not in _NOT_COUNTRIES:
            country = value.upper()
    return str(client), country
