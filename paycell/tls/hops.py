"""Which store URLs verify the server they reach. Production (paycell.config.settings) refuses the
others: a Postgres or Redis hop that leaves the machine must be encrypted to a verified server.

A hop that stays on this machine (a Unix socket, or the loopback interface: a sidecar such as a
local pgbouncer, cloud-sql-proxy or stunnel that itself speaks TLS onward) crosses no network, so
it is accepted as it is.
"""
from __future__ import annotations

import ipaddress
import ssl
from urllib.parse import parse_qsl, urlsplit

LOCAL_NAMES = frozenset({"localhost"})
POSTGRES_TLS_VERSIONS = frozenset({"TLSv1.2", "TLSv1.3"})
_FALSE = frozenset({"0", "f", "false", "n", "no", "off"})


def is_local(host: str | None) -> bool:
    """A Unix socket path, an empty host (the default socket) or a loopback address."""
    host = (host or "").strip("[]").lower()
    if not host or host.startswith("/") or host in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _postgres_hosts(url: str) -> list[str]:
    parts = urlsplit(url)
    hosts = []
    for item in parts.netloc.rsplit("@", 1)[-1].split(","):
        hosts.append(item.split("]")[0] + "]" if item.startswith("[") else item.rsplit(":", 1)[0])
    for key, value in parse_qsl(parts.query):
        if key == "host":
            hosts += value.split(",")
    return [h for h in hosts if h] or [""]


def postgres_problem(url: str) -> str | None:
    """Why this Postgres URL does not verify its server, or None. asyncpg verifies the chain and
    the host name only with sslmode=verify-full (its default, `prefer`, takes any certificate and
    falls back to plain text)."""
    if all(is_local(h) for h in _postgres_hosts(url)):
        return None
    query = dict(parse_qsl(urlsplit(url).query))
    if query.get("sslmode") != "verify-full":
        return ("reaches Postgres over the network without sslmode=verify-full: add "
                "?sslmode=verify-full&sslrootcert=/path/to/ca.pem (the CA that signed the server's certificate)")
    minimum = query.get("ssl_min_protocol_version")
    if minimum is not None and minimum not in POSTGRES_TLS_VERSIONS:
        return f"sets ssl_min_protocol_version={minimum}: TLSv1.2 is the lowest accepted"
    return None


def redis_problem(url: str) -> str | None:
    """Why this Redis URL does not verify its server, or None (paycell.tls.client.redis_options
    asks for verification; these query options of redis-py would undo it)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return None
    query = dict(parse_qsl(parts.query))
    if parts.scheme != "rediss":
        if is_local(parts.hostname):
            return None
        return "reaches Redis over the network in plain text: use rediss:// (Redis's TLS port)"
    if query.get("ssl_cert_reqs", "required").lower() != "required":
        return f"sets ssl_cert_reqs={query['ssl_cert_reqs']}: the server's certificate must be verified"
    if query.get("ssl_check_hostname", "true").lower() in _FALSE:
        return "sets ssl_check_hostname off: the certificate must name the host"
    minimum = query.get("ssl_min_version")
    if minimum is not None and (not minimum.isdigit() or int(minimum) < ssl.TLSVersion.TLSv1_2):
        return f"sets ssl_min_version={minimum}: TLS 1.2 ({int(ssl.TLSVersion.TLSv1_2)}) is the lowest accepted"
    return None
