"""Start-up checks of the long-running processes (web, worker, scheduler) in production.

Settings validation refuses what can be seen in the configuration alone (paycell.config.settings
`_validate_production`); what only the database can tell is checked here, once per process
start: the app role must not be a superuser, since a superuser ignores every privilege and
trigger-owner rule the ledger's safety rests on (and can disable the triggers themselves).
The web alone also refuses to serve plain HTTP unless a TLS-terminating proxy is declared
(`refuse_plain_http`): the other processes serve nothing.
"""
from __future__ import annotations

import asyncpg

from paycell.config import Settings, SettingsError


async def refuse_superuser(settings: Settings) -> None:
    """SettingsError when the app role's connection is a Postgres superuser."""
    conn = await asyncpg.connect(settings.app_database_url)
    try:
        row = await conn.fetchrow("SELECT current_user AS name, rolsuper FROM pg_roles WHERE rolname = current_user")
    finally:
        await conn.close()
    if row is None or row["rolsuper"]:
        name = row["name"] if row else "?"
        raise SettingsError(
            f"the app role {name!r} is a Postgres superuser, which PAYCELL_ENV=production refuses: it bypasses "
            "the ledger's privileges and triggers. Point PAYCELL_DATABASE_URL (or PAYCELL_APP_ROLE) at the "
            "least-privileged role `paycell migrate` creates (paycell_app by default)")


def refuse_plain_http(settings: Settings) -> None:
    """SettingsError when production's web would serve plain HTTP to whoever connects: it needs a
    certificate (PAYCELL_TLS_CERT_FILE/_KEY_FILE) or a TLS-terminating proxy in front of it
    (PAYCELL_TLS_BEHIND_PROXY=true, which the operator answers for)."""
    if settings.env == "production" and not settings.tls_cert_file and not settings.tls_behind_proxy:
        raise SettingsError(
            "PAYCELL_TLS_CERT_FILE is unset: `paycell web` would serve plain HTTP, which PAYCELL_ENV=production "
            "refuses. Set PAYCELL_TLS_CERT_FILE and PAYCELL_TLS_KEY_FILE to serve HTTPS, or, when a TLS-terminating "
            "proxy (nginx, Caddy, a load balancer) stands in front and only it can reach this port, set "
            "PAYCELL_TLS_BEHIND_PROXY=true")


async def preflight(settings: Settings) -> None:
    """Every database check production mode makes before a process starts; none in development."""
    if settings.env == "production":
        await refuse_superuser(settings)
