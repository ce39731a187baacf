"""Settings from the environment: one msgspec Struct, every field `PAYCELL_<FIELD>`.

Limits carry their unit in the name (TIGER_STYLE): `_s`, `_ms`, `_minor`, `_bytes`.
"""
from __future__ import annotations

import os
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

import msgspec

from paycell.config import secret_strength


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
    jwt_ttl_s: int = 86_400  # lifetime of the tokens `paycell token` and the demo issue
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

    # Authentication and production mode (issue 6, items 6-7). Tokens are verified in up to two
    # ways, chosen by their `alg`: HS256 with `jwt_secret` (dev, internal callers, `paycell
    # token`) and RS256/ES256/EdDSA with a key from the identity provider's JWKS (`jwks_url`).
    # Either may be off; the web refuses to start with both off. No secret has a default.
    env: str = "development"  # or "production": refuses dev settings (see _validate_production)
    jwt_secret: str = ""  # >= 256 random bits as hex/base64 (paycell.config.secret_strength)
    jwt_issuer: str = "paycell"  # `iss` of HS256 tokens
    jwt_audience: str = "paycell-api"  # `aud` every token must name (HS256)
    jwt_lifetime_s_max: int = 86_400  # exp - iat of any token accepted
    jwt_leeway_s: int = 30  # clock skew allowed on exp, nbf and iat
    jwks_url: str = ""  # the identity provider's JWKS; https:// (http:// only to loopback in dev)
    jwks_issuer: str = ""  # `iss` of the identity provider's tokens (required with jwks_url)
    jwks_audience: str = ""  # `aud` those tokens must name (required with jwks_url)
    jwks_algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
    jwks_cache_s: int = 300  # how long a fetched key set is used before it is fetched again
    jwks_refresh_s_min: int = 30  # at most one fetch per this many seconds for unknown key ids
    jwks_timeout_s: float = 5.0

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
    _validate_auth(settings)
    _validate_production(settings, given=set(raw))
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


_GENERATE_SECRET = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
_ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
                         "EdDSA"})
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def _validate_auth(s: Settings) -> None:
    for name in ("jwt_lifetime_s_max", "jwks_cache_s", "jwks_timeout_s"):
        if getattr(s, name) <= 0:
            raise SettingsError(f"PAYCELL_{name.upper()} must be positive, got {getattr(s, name)}")
    for name in ("jwt_leeway_s", "jwks_refresh_s_min"):
        if getattr(s, name) < 0:
            raise SettingsError(f"PAYCELL_{name.upper()} must not be negative, got {getattr(s, name)}")
    if s.jwt_ttl_s > s.jwt_lifetime_s_max:
        raise SettingsError(f"PAYCELL_JWT_TTL_S={s.jwt_ttl_s} exceeds PAYCELL_JWT_LIFETIME_S_MAX="
                            f"{s.jwt_lifetime_s_max}: lower the first or raise the second")
    if s.jwt_secret:
        weakness = secret_strength.problem(s.jwt_secret)
        if weakness:
            raise SettingsError(f"PAYCELL_JWT_SECRET {weakness}. Set it to a fresh random value, e.g. "
                                f"the output of: {_GENERATE_SECRET}")
    if not s.jwks_url:
        return
    parts = urlsplit(s.jwks_url)
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in _LOOPBACK):
        raise SettingsError(f"PAYCELL_JWKS_URL={s.jwks_url!r} must be an https:// URL (http:// is "
                            "accepted only to 127.0.0.1 or localhost, for development)")
    for name in ("jwks_issuer", "jwks_audience"):
        if not getattr(s, name):
            raise SettingsError(f"PAYCELL_{name.upper()} is required with PAYCELL_JWKS_URL: set it to the "
                                f"`{name.rsplit('_', 1)[1][:3]}` your identity provider puts in its tokens")
    bad = [a for a in s.jwks_algorithms if a not in _ASYMMETRIC]
    if bad or not s.jwks_algorithms:
        raise SettingsError(f"PAYCELL_JWKS_ALGORITHMS={','.join(s.jwks_algorithms)!r} may list only asymmetric "
                            f"algorithms ({', '.join(sorted(_ASYMMETRIC))}); refused: {bad or 'an empty list'}")


def _validate_production(s: Settings, given: set[str]) -> None:
    """PAYCELL_ENV=production refuses what is only fit for development; `given` holds the fields
    set explicitly (a default cannot tell a simulator URL from an unset one)."""
    if s.env not in ("development", "production"):
        raise SettingsError(f"PAYCELL_ENV={s.env!r} must be `development` or `production`")
    if s.env != "production":
        return
    refuse = "is refused when PAYCELL_ENV=production"
    if s.psp_default == "simulator":
        raise SettingsError(f"PAYCELL_PSP_DEFAULT=simulator (the default) {refuse}: the simulator moves no money. "
                            "Set PAYCELL_PSP_DEFAULT to a real connector")
    if "psp_sim_url" in given:
        raise SettingsError(f"PAYCELL_PSP_SIM_URL {refuse}: it points at the PSP simulator. Unset it; "
                            "production talks only to real connectors")
    if not s.jwt_secret and not s.jwks_url:
        raise SettingsError(f"PAYCELL_JWT_SECRET and PAYCELL_JWKS_URL are both unset: the API could verify no "
                            f"token. Set PAYCELL_JWKS_URL (and _ISSUER, _AUDIENCE) to your identity provider, "
                            f"and/or PAYCELL_JWT_SECRET to the output of: {_GENERATE_SECRET}")
    if s.jwks_url and urlsplit(s.jwks_url).scheme != "https":
        raise SettingsError(f"PAYCELL_JWKS_URL={s.jwks_url!r} {refuse}: use the identity provider's https:// URL")
    if not _redis_has_password(s.redis_url):
        raise SettingsError(f"PAYCELL_REDIS_URL without a password {refuse}: anyone who reaches Redis could "
                            "inject payment steps. Require a password on Redis (requirepass or an ACL user) and "
                            "put it in the URL: rediss://USER:PASSWORD@HOST:6379/0")


def _redis_has_password(url: str) -> bool:
    parts = urlsplit(url)
    if parts.password:
        return True
    return any(k == "password" and v for k, v in parse_qsl(parts.query))
