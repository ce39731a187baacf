"""Settings from the environment: one msgspec Struct, every field `PAYCELL_<FIELD>`.

Limits carry their unit in the name (TIGER_STYLE): `_s`, `_ms`, `_minor`, `_bytes`.
"""
from __future__ import annotations

import os
from urllib.parse import quote, urlsplit, urlunsplit

import msgspec


class SettingsError(Exception):
    """A PAYCELL_* variable holds a value that cannot be used."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    # Stores. The admin URL owns the schema (migrations); the app URL is the least-privileged
    # role every long-running process uses. When the app URL is unset it is the admin URL with
    # the user swapped for `app_role`.
    admin_database_url: str = "postgresql://postgres@127.0.0.1:5432/paycell"
    database_url: str = ""
    app_role: str = "paycell_app"
    app_role_password: str = ""
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Ledger integrity (issue 6 item 2): the NOLOGIN, non-superuser role that owns every table
    # and the posting functions; migrations from 0009 on run as it (SET LOCAL ROLE).
    owner_role: str = "paycell_owner"
    db_pool_size_min: int = 2
    db_pool_size_max: int = 10
    db_statement_timeout_ms: int = 5_000

    # Money.
    amount_minor_max: int = 100_000_000_00  # per payment, in minor units of any currency
    wallet_currencies: tuple[str, ...] = ("USD", "EUR", "GBP", "JPY", "KWD")
    system_account_slices: int = 32  # hot system accounts are split over this many rows

    # HTTP.
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    http_body_bytes_max: int = 16_384
    jwt_secret: str = "paycell-dev-secret-change-me-0123456789"
    jwt_ttl_s: int = 86_400
    prefer_wait_s_max: int = 10
    idempotency_lock_s: int = 30

    # Pipeline.
    psp_lease_s: int = 30
    psp_default: str = "simulator"  # the PSP the router picks until the routing table lands
    psp_poll_interval_ms: int = 2_000
    order_deadline_s: int = 86_400
    psp_timeout_s: float = 5.0
    retries_max: int = 8
    retry_backoff_min_ms: int = 200
    retry_backoff_max_ms: int = 60_000
    sweep_interval_s: int = 10
    risk_amount_minor_max: int = 5_000_000  # the guardrail the risk step enforces until the rules engine lands

    # PSP simulator (dev, demo and tests).
    psp_sim_url: str = "http://127.0.0.1:8090"
    psp_sim_port: int = 8090

    log_level: str = "info"

    @property
    def app_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return with_user(self.admin_database_url, self.app_role, self.app_role_password)


def with_user(url: str, user: str, password: str = "") -> str:
    """The same Postgres URL with another user (and password)."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    user, password = quote(user, safe=""), quote(password, safe="")
    auth = f"{user}:{password}@" if password else f"{user}@"
    return urlunsplit(parts._replace(netloc=auth + host))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/") or "postgres"


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    if not parts.netloc:  # "postgresql:///db?host=/sock": urlunsplit would drop the empty authority
        return f"{parts.scheme}:///{name}" + (f"?{parts.query}" if parts.query else "")
    return urlunsplit(parts._replace(path="/" + name))


_FIELDS = {field.name: field for field in msgspec.structs.fields(Settings)}


def load(environ: dict[str, str] | None = None, **overrides) -> Settings:
    """Read settings from `environ` (default os.environ); a malformed value names its variable."""
    env = os.environ if environ is None else environ
    raw: dict[str, object] = {}
    for name, field in _FIELDS.items():
        var = f"PAYCELL_{name.upper()}"
        if var not in env:
            continue
        value: object = env[var]
        try:
            if field.type == tuple[str, ...]:
                value = tuple(v.strip() for v in str(value).split(",") if v.strip())
            raw[name] = msgspec.convert(value, field.type, strict=False)
        except msgspec.ValidationError as exc:
            raise SettingsError(f"{var}={env[var]!r} is not a valid {_type_name(field.type)}: {exc}") from None
    raw.update(overrides)
    settings = Settings(**raw)
    _validate(settings)
    return settings


def _type_name(t: object) -> str:
    return getattr(t, "__name__", str(t))


def _validate(s: Settings) -> None:
    for name in ("db_pool_size_min", "db_pool_size_max", "amount_minor_max", "system_account_slices",
                 "http_body_bytes_max", "jwt_ttl_s", "psp_lease_s", "retries_max", "sweep_interval_s"):
        if getattr(s, name) <= 0:
            raise SettingsError(f"PAYCELL_{name.upper()} must be positive, got {getattr(s, name)}")
    for name in ("admin_database_url",):
        if not getattr(s, name).startswith(("postgres://", "postgresql://")):
            raise SettingsError(f"PAYCELL_{name.upper()} must be a postgresql:// URL")
    if s.database_url and not s.database_url.startswith(("postgres://", "postgresql://")):
        raise SettingsError("PAYCELL_DATABASE_URL must be a postgresql:// URL")
    if not s.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError("PAYCELL_REDIS_URL must be a redis:// or unix:// URL")
    if len(s.jwt_secret) < 32:
        raise SettingsError("PAYCELL_JWT_SECRET must be at least 32 characters")
