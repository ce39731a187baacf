"""Settings from the environment: one msgspec Struct, every field `PAYCELL_<FIELD>`.

Limits carry their unit in the name (TIGER_STYLE): `_s`, `_ms`, `_minor`, `_bytes`.
"""
from __future__ import annotations

import os
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

import msgspec

from paycell.config import secret_strength


IDEMPOTENCY_KEY_RETENTION_S_MIN = 86_400
# Old connector names still accepted in configuration and stored rows -> the name now.
CONNECTOR_ALIASES = {"simulator": "test"}


class SettingsError(Exception):
    """A PAYCELL_* variable holds a value that cannot be used."""


# What the reversal policy does per failure kind unless PAYCELL_REVERSAL_POLICY says otherwise.
DEFAULT_REVERSAL_POLICY = {"ledger_refused": "reverse", "ledger_unavailable": "human", "step_error": "human"}


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    # Stores. The admin URL owns the schema (migrations); the app URL is the least-privileged
    # role every long-running process uses. When the app URL is unset it is the admin URL with
    # the user swapped for `app_role`.
    admin_database_url: str = "postgresql://postgres@127.0.0.1:5432/paycell"
    database_url: str = ""
    app_role: str = "paycell_app"
    app_role_password: str = ""
    redis_url: str = "redis://127.0.0.1:6379/0"
    # The message broker: empty = Dramatiq on Redis at redis_url; amqp:// or amqps:// = Dramatiq on
    # RabbitMQ (durable queues, publisher confirms). Redis stays for breakers, rate limits, velocity.
    broker_url: str = ""
    # On RabbitMQ: "classic" (durable, on one node) or "quorum" (replicated over the cluster's nodes
    # by Raft: what survives losing a node). Fixed when a queue is first declared: changing it needs
    # new queues (a vhost of their own), RabbitMQ refuses to redeclare a queue with another type.
    rabbitmq_queue_type: str = "classic"
    # Ledger integrity (issue 6 item 2): the NOLOGIN, non-superuser role that owns every table
    # and the posting functions; migrations from 0009 on run as it (SET LOCAL ROLE).
    owner_role: str = "paycell_owner"
    db_pool_size_min: int = 2
    db_pool_size_max: int = 10
    db_statement_timeout_ms: int = 5_000
    # asyncpg's prepared-statement cache, per connection (an LRU): at most this many statements
    # (0 turns it off), each statement's text at most `db_statement_cache_statement_bytes_max`.
    # A process holds at most db_pool_size_max x this many: the web's, a worker's, the scheduler's pool.
    db_statement_cache_entries_max: int = 100
    db_statement_cache_statement_bytes_max: int = 15_360

    # Money.
    amount_minor_max: int = 100_000_000_00  # per payment, in minor units of any currency
    wallet_currencies: tuple[str, ...] = ("USD", "EUR", "GBP", "JPY", "KWD")
    system_account_slices: int = 32  # hot system accounts are split over this many rows

    # HTTP.
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    http_body_bytes_max: int = 16_384
    # Where a request comes from (paycell/http/client.py): the peer's address unless the peer is
    # one of these proxies (CIDRs), which then say it in X-Forwarded-For; the country only from
    # such a proxy, in the header named here (e.g. CF-IPCountry, CloudFront-Viewer-Country).
    trusted_proxies: tuple[str, ...] = ()
    client_country_header: str = ""
    jwt_ttl_s: int = 86_400  # lifetime of the tokens `paycell token` and the demo issue
    prefer_wait_s_max: int = 10
    prefer_waiters_max: int = 10_000  # `Prefer: wait` requests one web process holds at once; beyond: answered at once
    idempotency_lock_s: int = 30

    # Pipeline.
    psp_lease_s: int = 30
    psp_default: str = "test"  # the connector of every payment option the routing table leaves out
    # The routing table (paycell.psp.routing): per payment option, optionally per currency, the
    # connectors to try in order, e.g. "card=stripe,adyen;card/EUR=adyen,stripe;paypal=paypal".
    psp_routes: str = ""
    # Extra instances of the `test` connector, each on a simulator of its own (development and
    # tests only): "test_b:http://127.0.0.1:8091,test_c:http://127.0.0.1:8092".
    psp_test_connectors: dict[str, str] = msgspec.field(default_factory=dict)
    # Circuit breakers, one per connector, shared by every worker through Redis (purgatory): this
    # many technical failures in a row (timeouts, 5xx, connection errors; never a decline) open
    # it; after `psp_breaker_reopen_s` one call is let through (half-open) and closes it again.
    psp_breaker_failures_max: int = 5
    psp_breaker_reopen_s: float = 30.0
    # Calls of one connector whose outcome stayed unknown before an order may leave it for the
    # next candidate (only once that connector said it holds no such payment).
    psp_connector_tries_max: int = 3
    # ... and only this long after the last such call was given up on: a request the provider was
    # still processing when paycell stopped waiting (a timeout) must have finished before its
    # "no such payment" is believed. Until then the order waits; it is not submitted there again.
    psp_failover_quiet_s: float = 30.0
    psp_poll_interval_ms: int = 2_000  # the first wait before a pending charge is asked again
    psp_poll_interval_max_ms: int = 300_000  # the longest wait between two asks (exponential backoff)
    # How long a charge may stay pending at the PSP (ACH takes days) before its order goes to
    # needs_attention (a pay-out keeps its reserve); it replaces the order's deadline from then on.
    psp_pending_deadline_s: int = 7 * 86_400
    order_deadline_s: int = 86_400
    psp_timeout_s: float = 5.0
    retries_max: int = 8
    retry_backoff_min_ms: int = 200
    retry_backoff_max_ms: int = 60_000
    sweep_interval_s: int = 10
    # A worker told to stop (SIGTERM) lets its running steps finish this long, then exits; what is
    # still running is handed back (unacknowledged) and re-driven: paycell/actors/shutdown.py.
    worker_shutdown_timeout_ms: int = 7_000

    # PSP simulator (dev, demo and tests).
    psp_sim_url: str = "http://127.0.0.1:8090"
    psp_sim_port: int = 8090
    # Where the provider simulators deliver webhooks: `{this}/psp/webhooks/{connector}`.
    psp_sim_webhook_base_url: str = "http://127.0.0.1:8080"

    # PSP connectors (issue 7). A connector is configured once its credentials are set; the base
    # addresses default to the providers' own (sandbox for Adyen and PayPal) and point at
    # `paycell psp-sim`'s /stripe, /adyen, /paypal and /bank in development and tests. Secrets have
    # no defaults.
    stripe_api_base_url: str = "https://api.stripe.com"
    stripe_api_key: str = ""
    stripe_webhook_secret: str = ""
    adyen_checkout_base_url: str = "https://checkout-test.adyen.com/v71"
    adyen_payout_base_url: str = "https://pal-test.adyen.com/pal/servlet/Payout/v68"
    adyen_api_key: str = ""
    adyen_merchant_account: str = ""
    adyen_hmac_key: str = ""  # hex, from the Customer Area's webhook settings
    paypal_api_base_url: str = "https://api-m.sandbox.paypal.com"
    paypal_client_id: str = ""
    paypal_client_secret: str = ""
    paypal_webhook_id: str = ""
    # Hosts PayPal's webhook signing certificate may be fetched from (PAYPAL-CERT-URL).
    paypal_cert_hosts: tuple[str, ...] = ("api.paypal.com", "api.sandbox.paypal.com")
    # The bank rail speaks Modern Treasury's Payment Orders API: Basic auth with the organization
    # id and an API key; pay-ins and pay-outs go from/to the internal account named here.
    bank_api_base_url: str = "https://app.moderntreasury.com"
    bank_organization_id: str = ""
    bank_api_key: str = ""
    bank_originating_account_id: str = ""
    bank_webhook_secret: str = ""  # the organization's webhook key (signs X-Signature)
    # Where a provider sends the customer back after an action (PayPal approval, 3-D Secure).
    psp_return_url: str = "http://127.0.0.1:8080/payments/return"
    # A payment waiting for its customer (requires_action) is polled every this many seconds and
    # fails once the deadline has passed while the provider still waits for them.
    psp_action_deadline_s: int = 1_800
    psp_action_poll_interval_s: int = 60

    # Webhooks (POST /psp/webhooks/{connector}): the largest delivery read; an event no order
    # matches yet is tried again every `psp_event_retry_s`, at most `psp_event_apply_attempts_max`
    # times, then waits for an operator (`paycell webhooks unapplied`).
    psp_webhook_body_bytes_max: int = 262_144
    psp_event_retry_s: int = 30
    psp_event_apply_attempts_max: int = 20
    # The test simulator's own webhooks: HMAC-SHA256 with this secret (no default: without it
    # the `simulator` connector refuses every delivery), and how old a signature may be.
    psp_sim_webhook_secret: str = ""
    psp_sim_webhook_tolerance_s: int = 300

    # Rate limits and velocity (issue 6 item 8): payment creation per user and per instrument in a
    # moving window of one minute, shared by every web process through Redis; an instrument with
    # `instrument_declines_max` PSP declines within `instrument_decline_window_s` is blocked; a
    # user may hold at most `prefer_wait_per_user_max` waiting requests (`Prefer: wait`) per web
    # process, beyond which the answer comes at once.
    rate_limit_redis_url: str = ""  # empty: redis_url
    rate_user_payments_per_minute: int = 60
    rate_instrument_payments_per_minute: int = 20
    instrument_declines_max: int = 5
    instrument_decline_window_s: int = 3_600
    prefer_wait_per_user_max: int = 4

    # Retention (issue 6 item 13): idempotency keys are deleted this long after their first use,
    # in batches of `idempotency_expire_batch_rows`, at most `idempotency_expire_batches_max` per run.
    idempotency_key_retention_s: int = 7 * 86_400
    idempotency_expire_batch_rows: int = 1_000
    idempotency_expire_batches_max: int = 100

    # Every this many seconds each web, worker and scheduler process hands the C allocator's free
    # memory back to the OS (malloc_trim, glibc only; paycell/memory/trim.py says why); 0: never.
    malloc_trim_interval_s: float = 30.0

    log_level: str = "info"
    # json, console, or auto (console on a terminal outside production, else json): paycell/logs.py.
    log_format: str = "auto"

    # The edge: slow and abusive clients, readiness (issue 6 items 9-12).
    http_body_read_timeout_s: float = 10.0    # a request body must arrive within this, else 408
    http_keepalive_timeout_s: float = 15.0    # idle keep-alive, and the whole wait for a request's headers
    http_concurrent_requests_max: int = 512   # per web process; beyond it 503 + Retry-After
    # Several `paycell web` processes on one host and port (SO_REUSEPORT: the kernel spreads
    # connections over them), e.g. `honcho start -c web=4` with this set.
    http_reuse_port: bool = False
    db_acquire_timeout_s: float = 2.0         # the web's wait for a pooled connection, else 503 + Retry-After
    readiness_cache_s: float = 2.0            # GET /ready checks Postgres and Redis at most once per period
    readiness_check_timeout_s: float = 2.0    # each store must answer the readiness check within this
    # Admission control (paycell/admission): new payments get 503 + Retry-After when the payments
    # they would join could not finish within `admission_ttc_ms_max` of their acceptance (the oldest
    # message no worker has taken is older than QUEUE_WAIT_SHARE of it), or past this many waiting.
    admission_ttc_ms_max: int = 30_000
    admission_queue_depth_max: int = 100_000
    admission_check_interval_ms: int = 200    # how often each web process reads the backlog from Redis
    # Metrics (paycell/metrics): a web process reads the system's gauges (live orders, review queue,
    # breakers ...) from Postgres and Redis at most once per period, however often it is scraped.
    metrics_db_refresh_ms: int = 5_000
    # Each `paycell worker` serves its processes' metrics (Dramatiq's Prometheus middleware) on this
    # address; port 0: not served. Two worker groups on one host need two ports.
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = 9191

    # Accounts and risk limits (issue 6, items 3-5).
    # Users the web process remembers having registered (an LRU), so registration costs no write per request.
    known_users_cache_entries_max: int = 100_000
    # Ledger account ids a process remembers (an LRU of (account code, currency); paycell/store/accounts.py).
    account_cache_entries_max: int = 100_000
    # The risk step's guardrail, per currency in minor units (a floor no rule can lift). Every wallet
    # currency must have both limits. Env form: "USD:5000000,EUR:5000000,...".
    # Risk: the rule file in force while Postgres holds no rule set (unset: paycell/rules/default.rules).
    risk_rules_file: str = ""
    # The review queue (paycell/reviews.py): an unresolved item expires this long after it opened,
    # and the expiry actor then applies `review_expiry_action` ("decline": the payment fails and a
    # pay-out's reserve is released; "approve": it continues). An operator's claim on an item lapses
    # after `review_claim_s`: another operator may then claim or resolve it.
    review_expiry_s: int = 259_200
    review_expiry_action: str = "decline"
    review_claim_s: int = 900
    # The operator console (paycell/console): a sign-in lasts this long, and never longer than the
    # token it was opened with.
    console_session_s: int = 28_800
    # ... and its overview counts the last hour's payments for at most this long (a busy hour holds
    # millions): past it the page says so instead of its chart.
    console_chart_timeout_ms: int = 2_000
    # Reversals (paycell/reversals): what paycell does when the posting after a PSP success fails
    # past its retries, per failure kind (paycell/reversals/policy.py): "reverse" (refund a pay-in,
    # recall a pay-out at the PSP) or "human" (needs_attention). Env form: "ledger_refused:reverse,...";
    # kinds left out keep their default (README: why these).
    reversal_policy: dict[str, str] = msgspec.field(default_factory=lambda: dict(DEFAULT_REVERSAL_POLICY))
    risk_amount_minor_max_by_currency: dict[str, int] = msgspec.field(default_factory=lambda: {
        "USD": 50_000_00, "EUR": 50_000_00, "GBP": 40_000_00, "JPY": 7_500_000, "KWD": 15_000_000})
    # A user's accepted payments of the last 24 h, per currency, including the one being screened.
    risk_daily_amount_minor_max_by_currency: dict[str, int] = msgspec.field(default_factory=lambda: {
        "USD": 250_000_00, "EUR": 250_000_00, "GBP": 200_000_00, "JPY": 37_500_000, "KWD": 75_000_000})
    # Issue 8: how often a worker checks whether the risk configuration in force changed (the rule
    # set and lists: one counter row, paycell/rules/in_force.py; the promoted model, paycell/risk/scorer.py).
    # 0: on every payment.
    risk_reload_s: float = 1.0
    # Live entries of all risk lists together: every worker holds them in memory (paycell/rules/in_force.py),
    # so adding past this is refused (422 risk_lists_full).
    risk_list_entries_max: int = 1_000_000

    # The fraud model (issue 8, paycell/risk): trained weekly and by `paycell risk train` on the last
    # `risk_train_window_days` of payments, evaluated on the window's last `risk_train_holdout_share`
    # (by time); training stops, storing nothing, with fewer than `risk_train_frauds_min` labelled
    # frauds. A model is promoted only with a held-out ROC AUC of at least `risk_model_auc_min` and
    # no worse than the promoted model's on the same slice. Workers ask which model is promoted at
    # most every `risk_reload_s` (0: on every payment) and load a new one without a restart.
    risk_train_window_days: int = 90
    risk_train_frauds_min: int = 30
    risk_train_holdout_share: float = 0.2
    risk_model_auc_min: float = 0.9
    risk_train_statement_timeout_ms: int = 600_000  # reading the window may take longer than a request may
    # The most payments one training run holds in memory: the window's newest, when it has more.
    risk_train_payments_max: int = 1_000_000

    # Reconciliation (issue 10): a 1,000,000-line settlement file is COPYed and classified in
    # statements that outlast a request's timeout; only the ingesting transaction's is raised.
    reconcile_statement_timeout_ms: int = 900_000

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
    jwks_roles_claim: str = "roles"  # the claim of those tokens listing the caller's roles ("operator")
    jwks_algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
    jwks_cache_s: int = 300  # how long a fetched key set is used before it is fetched again
    jwks_refresh_s_min: int = 30  # at most one fetch per this many seconds for unknown key ids
    jwks_timeout_s: float = 5.0

    # Scheduled payments (issue 9, paycell/schedules). A rule whose occurrences come closer than
    # `schedule_interval_s_min` is refused. Each run starts up to `schedule_jitter_s` after its
    # occurrence (a hash of schedule and occurrence), so schedules due at one minute do not land as
    # one burst. `schedule_failures_max` failed runs in a row pause the schedule. The clock claims
    # due schedules `schedule_claim_batch_rows` at a time, at most `schedule_claim_batches_max` batches
    # per tick, a tick every `scheduler_tick_s`; a run whose payment is still processing is looked at
    # again after twice its age, at most `schedule_outcome_recheck_s_max` later.
    schedule_interval_s_min: int = 3_600
    schedule_jitter_s: int = 300
    schedule_failures_max: int = 3
    schedule_claim_batch_rows: int = 500
    schedule_claim_batches_max: int = 100
    scheduler_tick_s: float = 1.0
    schedule_outcome_recheck_s_max: int = 300

    # Transport security (issue 13, paycell/tls). `paycell web` serves HTTPS with this certificate
    # chain and key (PEM; TLS >= 1.2, ECDHE + AEAD ciphers for 1.2); without them it serves plain
    # HTTP, which production refuses unless `tls_behind_proxy` says a TLS-terminating proxy (nginx,
    # Caddy, a cloud load balancer) stands in front. HTTPS answers carry Strict-Transport-Security
    # with `tls_hsts_max_age_s` (0: none).
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_behind_proxy: bool = False
    tls_hsts_max_age_s: int = 31_536_000
    # Outbound hops (PSP APIs, PayPal's certificate URL, settlement reports, the identity provider,
    # rediss://): certificates are verified against the system's CAs plus this bundle (PEM), for
    # a private CA. Postgres takes its CA from the URL (sslmode=verify-full&sslrootcert=...).
    tls_ca_file: str = ""
    # Certificate revocation lists (PEM, one file) checked for the provider's certificate on those
    # https hops: a revoked one is refused. Once set, every CA those hops meet must have its CRL in
    # the file (OpenSSL refuses a certificate whose issuer's CRL is missing); refresh it before the
    # CRLs' nextUpdate. Postgres reads its own from the URL (sslcrl=...).
    tls_crl_file: str = ""
    # Public-key pins per connector: the SHA-256 of the provider certificate's SubjectPublicKeyInfo,
    # base64 (HPKP's pin-sha256), several per connector for a key rotation:
    # "stripe:PIN|BACKUP_PIN,adyen:PIN". A connection whose key is not listed is refused.
    psp_tls_pins: dict[str, str] = msgspec.field(default_factory=dict)

    # Web performance (issue 6 follow-up). Verified bearer tokens each web process remembers (an
    # LRU; 0 turns it off), so a client's repeated token skips the signature check; see http/auth.py.
    jwt_verified_cache_entries_max: int = 10_000

    @property
    def limiter_redis_url(self) -> str:
        return self.rate_limit_redis_url or self.redis_url

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
    if "PAYCELL_RISK_AMOUNT_MINOR_MAX" in env:  # an operator's tighter limit must not vanish silently
        raise SettingsError("PAYCELL_RISK_AMOUNT_MINOR_MAX is gone: limits are per currency now; set "
                            "PAYCELL_RISK_AMOUNT_MINOR_MAX_BY_CURRENCY (e.g. USD:5000000,EUR:5000000,...)")
    raw: dict[str, object] = {}
    for name, field in _FIELDS.items():
        var = f"PAYCELL_{name.upper()}"
        if var not in env:
            continue
        value: object = env[var]
        try:
            if field.type == tuple[str, ...]:
                value = tuple(v.strip() for v in str(value).split(",") if v.strip())
            elif field.type in (dict[str, int], dict[str, str]):
                value = _parse_map(str(value))
            raw[name] = msgspec.convert(value, field.type, strict=False)
        except msgspec.ValidationError as exc:
            raise SettingsError(f"{var}={env[var]!r} is not a valid {_type_name(field.type)}: {exc}") from None
    raw.update(overrides)
    if "reversal_policy" in raw:
        raw["reversal_policy"] = {**DEFAULT_REVERSAL_POLICY, **raw["reversal_policy"]}
    if raw.get("psp_default") in CONNECTOR_ALIASES:
        raw["psp_default"] = CONNECTOR_ALIASES[raw["psp_default"]]
    settings = Settings(**raw)
    _validate(settings)
    _validate_auth(settings)
    _validate_production(settings, given=set(raw))
    return settings


def _parse_map(text: str) -> dict[str, object]:
    """"USD:5000000, EUR:4000000" -> {"USD": "5000000", "EUR": "4000000"} (values converted by the caller)."""
    found: dict[str, object] = {}
    for item in (i.strip() for i in text.split(",") if i.strip()):
        key, sep, value = item.partition(":")
        if not sep or not key.strip() or key.strip() in found:
            raise msgspec.ValidationError(f"expected KEY:VALUE pairs separated by commas, each key once; got {item!r}")
        found[key.strip()] = value.strip()
    return found


def _type_name(t: object) -> str:
    return getattr(t, "__name__", str(t))


# Limits where a zero would disable a bound rather than set one.
_POSITIVE = (
    "db_pool_size_min", "db_pool_size_max", "amount_minor_max", "system_account_slices", "http_body_bytes_max",
    "jwt_ttl_s", "psp_lease_s", "retries_max", "sweep_interval_s", "worker_shutdown_timeout_ms",
    # the router
    "psp_breaker_failures_max", "psp_breaker_reopen_s", "psp_connector_tries_max", "psp_poll_interval_ms",
    "psp_poll_interval_max_ms", "psp_pending_deadline_s",
    # the edge
    "http_body_read_timeout_s", "http_keepalive_timeout_s", "http_concurrent_requests_max", "db_acquire_timeout_s",
    "readiness_cache_s", "readiness_check_timeout_s", "admission_ttc_ms_max", "admission_queue_depth_max",
    "admission_check_interval_ms", "metrics_db_refresh_ms",
    # rate limits, velocity, retention, caches
    "rate_user_payments_per_minute", "rate_instrument_payments_per_minute", "instrument_declines_max",
    "instrument_decline_window_s", "prefer_wait_per_user_max", "idempotency_expire_batch_rows",
    "idempotency_expire_batches_max", "known_users_cache_entries_max",
    "account_cache_entries_max", "prefer_waiters_max", "db_statement_cache_statement_bytes_max",
    # payments waiting for their customer, webhooks
    "psp_action_deadline_s", "psp_action_poll_interval_s", "psp_webhook_body_bytes_max", "psp_event_retry_s",
    "psp_event_apply_attempts_max", "psp_sim_webhook_tolerance_s",
    # the review queue
    "review_expiry_s", "review_claim_s", "console_session_s", "console_chart_timeout_ms",
    # scheduled payments
    "schedule_interval_s_min", "schedule_failures_max", "schedule_claim_batch_rows", "schedule_claim_batches_max",
    "scheduler_tick_s", "schedule_outcome_recheck_s_max",
    # the fraud model
    "risk_train_window_days", "risk_train_frauds_min", "risk_train_statement_timeout_ms", "risk_train_payments_max",
    "risk_list_entries_max",
    # reconciliation
    "reconcile_statement_timeout_ms",
)
REVIEW_EXPIRY_ACTIONS = ("decline", "approve")


def _validate(s: Settings) -> None:
    for name in _POSITIVE:
        if getattr(s, name) <= 0:
            raise SettingsError(f"PAYCELL_{name.upper()} must be positive, got {getattr(s, name)}")
    for name in ("admin_database_url",):
        if not getattr(s, name).startswith(("postgres://", "postgresql://")):
            raise SettingsError(f"PAYCELL_{name.upper()} must be a postgresql:// URL")
    if s.database_url and not s.database_url.startswith(("postgres://", "postgresql://")):
        raise SettingsError("PAYCELL_DATABASE_URL must be a postgresql:// URL")
    if not s.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError("PAYCELL_REDIS_URL must be a redis:// or unix:// URL")
    if s.broker_url and not s.broker_url.startswith(("amqp://", "amqps://")):
        raise SettingsError("PAYCELL_BROKER_URL must be empty (Redis) or an amqp:// or amqps:// URL (RabbitMQ)")
    if s.rabbitmq_queue_type not in ("classic", "quorum"):
        raise SettingsError(f"PAYCELL_RABBITMQ_QUEUE_TYPE must be classic or quorum, got {s.rabbitmq_queue_type!r}")
    if not 0 <= s.worker_metrics_port <= 65_535:
        raise SettingsError(f"PAYCELL_WORKER_METRICS_PORT must be a TCP port (0: not served), got {s.worker_metrics_port}")
    if s.log_format not in ("auto", "json", "console"):
        raise SettingsError(f"PAYCELL_LOG_FORMAT must be auto, json or console, got {s.log_format!r}")
    if s.rate_limit_redis_url and not s.rate_limit_redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError("PAYCELL_RATE_LIMIT_REDIS_URL must be a redis:// or unix:// URL")
    if s.idempotency_key_retention_s < IDEMPOTENCY_KEY_RETENTION_S_MIN:
        # Clients retry for up to a day (Stripe keeps keys >= 24 h): a shorter retention would
        # turn a late retry into a refused request instead of the replayed answer.
        raise SettingsError(f"PAYCELL_IDEMPOTENCY_KEY_RETENTION_S must be at least {IDEMPOTENCY_KEY_RETENTION_S_MIN} "
                            f"(24 h), got {s.idempotency_key_retention_s}")
    if s.malloc_trim_interval_s < 0:
        raise SettingsError(f"PAYCELL_MALLOC_TRIM_INTERVAL_S must not be negative (0: never), got {s.malloc_trim_interval_s}")
    if s.db_statement_cache_entries_max < 0:
        raise SettingsError("PAYCELL_DB_STATEMENT_CACHE_ENTRIES_MAX must not be negative (0 turns the cache off), "
                            f"got {s.db_statement_cache_entries_max}")
    if s.jwt_verified_cache_entries_max < 0:
        raise SettingsError("PAYCELL_JWT_VERIFIED_CACHE_ENTRIES_MAX must not be negative (0 turns the cache off)")
    for name in ("risk_amount_minor_max_by_currency", "risk_daily_amount_minor_max_by_currency"):
        limits = getattr(s, name)
        missing = [c for c in s.wallet_currencies if c not in limits]
        if missing:
            raise SettingsError(f"PAYCELL_{name.upper()} has no limit for {', '.join(missing)}: "
                                "every wallet currency needs one")
        bad = {c: v for c, v in limits.items() if v <= 0}
        if bad:
            raise SettingsError(f"PAYCELL_{name.upper()}: limits must be positive; got {bad}")
    if s.risk_reload_s < 0:
        raise SettingsError(f"PAYCELL_RISK_RELOAD_S must not be negative (0: check on every payment), "
                            f"got {s.risk_reload_s}")
    if s.review_expiry_action not in REVIEW_EXPIRY_ACTIONS:
        raise SettingsError(f"PAYCELL_REVIEW_EXPIRY_ACTION must be one of {', '.join(REVIEW_EXPIRY_ACTIONS)}, "
                            f"got {s.review_expiry_action!r}")
    _validate_reversal_policy(s)
    if not 0 < s.risk_train_holdout_share <= 0.5:
        raise SettingsError(f"PAYCELL_RISK_TRAIN_HOLDOUT_SHARE must be in (0, 0.5], got {s.risk_train_holdout_share}")
    if not 0.5 <= s.risk_model_auc_min <= 1:
        raise SettingsError(f"PAYCELL_RISK_MODEL_AUC_MIN must be in [0.5, 1] (0.5 is a coin toss), "
                            f"got {s.risk_model_auc_min}")
    if s.psp_failover_quiet_s < 0:
        raise SettingsError(f"PAYCELL_PSP_FAILOVER_QUIET_S must not be negative, got {s.psp_failover_quiet_s}")
    if s.psp_poll_interval_max_ms < s.psp_poll_interval_ms:
        raise SettingsError(f"PAYCELL_PSP_POLL_INTERVAL_MAX_MS={s.psp_poll_interval_max_ms} is below "
                            f"PAYCELL_PSP_POLL_INTERVAL_MS={s.psp_poll_interval_ms}")
    _validate_connectors(s)
    _validate_client(s)
    _validate_schedules(s)
    _validate_tls(s)


def _validate_tls(s: Settings) -> None:
    from paycell.psp import registry
    from paycell.tls.pinning import parse_pins
    if bool(s.tls_cert_file) != bool(s.tls_key_file):
        raise SettingsError("PAYCELL_TLS_CERT_FILE and PAYCELL_TLS_KEY_FILE go together: set both to serve HTTPS, "
                            "or neither to serve plain HTTP (behind a TLS-terminating proxy)")
    for name in ("tls_ca_file", "tls_crl_file"):
        path = getattr(s, name)
        if path and not os.access(path, os.R_OK):
            raise SettingsError(f"PAYCELL_{name.upper()}={path!r} is not a readable file")
    if s.tls_hsts_max_age_s < 0:
        raise SettingsError(f"PAYCELL_TLS_HSTS_MAX_AGE_S must not be negative (0: no header), "
                            f"got {s.tls_hsts_max_age_s}")
    for name, pins in s.psp_tls_pins.items():
        if name not in registry.all_names(s):
            raise SettingsError(f"PAYCELL_PSP_TLS_PINS: {name!r} is not a connector; known: {registry.all_names(s)}")
        try:
            parse_pins(pins)
        except ValueError as exc:
            raise SettingsError(f"PAYCELL_PSP_TLS_PINS: {name}: {exc}. Expected CONNECTOR:PIN|PIN,... with each PIN "
                                "the base64 SHA-256 of the key (see README, Security)") from None


REVERSAL_FAILURE_KINDS = ("ledger_refused", "ledger_unavailable", "step_error")
REVERSAL_ACTIONS = ("reverse", "human")


def _validate_reversal_policy(s: Settings) -> None:
    unknown = sorted(set(s.reversal_policy) - set(REVERSAL_FAILURE_KINDS))
    if unknown:
        raise SettingsError(f"PAYCELL_REVERSAL_POLICY names unknown failure kinds {unknown}; the kinds are "
                            f"{', '.join(REVERSAL_FAILURE_KINDS)}")
    bad = {k: v for k, v in s.reversal_policy.items() if v not in REVERSAL_ACTIONS}
    if bad:
        raise SettingsError(f"PAYCELL_REVERSAL_POLICY: each kind takes one of {', '.join(REVERSAL_ACTIONS)}; got {bad}")


def _validate_schedules(s: Settings) -> None:
    if not 0 <= s.schedule_jitter_s < s.schedule_interval_s_min:
        raise SettingsError(f"PAYCELL_SCHEDULE_JITTER_S={s.schedule_jitter_s} must be at least 0 and below "
                            f"PAYCELL_SCHEDULE_INTERVAL_S_MIN={s.schedule_interval_s_min}, so that a run always "
                            "starts before the next occurrence")


def _validate_client(s: Settings) -> None:
    import ipaddress
    for cidr in s.trusted_proxies:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise SettingsError(f"PAYCELL_TRUSTED_PROXIES: {cidr!r} is not an IP address or network") from None


def _validate_connectors(s: Settings) -> None:
    # Imported here: the registry and the routing table read Settings themselves.
    from paycell.psp import registry, routing
    for name, url in s.psp_test_connectors.items():
        if registry.canonical(name) in registry.CONNECTORS:
            raise SettingsError(f"PAYCELL_PSP_TEST_CONNECTORS: {name!r} is a registered connector's name; "
                                "choose another name for the extra test instance")
        if not routing.CONNECTOR_NAME.fullmatch(name) or not url.startswith(("http://", "https://")):
            raise SettingsError(f"PAYCELL_PSP_TEST_CONNECTORS: expected NAME:http://HOST:PORT pairs with "
                                f"lower-case names, got {name!r}:{url!r}")
    try:
        routing.parse(s.psp_routes, s)
    except routing.RouteError as exc:
        raise SettingsError(f"PAYCELL_PSP_ROUTES: {exc}") from None


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
    if s.psp_default == "test":
        raise SettingsError(f"PAYCELL_PSP_DEFAULT=test (the default; `simulator` is its old name) {refuse}: the "
                            "test connector's simulator moves no money. Set PAYCELL_PSP_DEFAULT to a real connector")
    if s.psp_test_connectors:
        raise SettingsError(f"PAYCELL_PSP_TEST_CONNECTORS {refuse}: its connectors are simulators. Unset it")
    from paycell.psp import routing
    if "test" in routing.connectors_named(s.psp_routes, s):
        raise SettingsError(f"PAYCELL_PSP_ROUTES naming the test connector {refuse}: it moves no money")
    if "psp_sim_url" in given:
        raise SettingsError(f"PAYCELL_PSP_SIM_URL {refuse}: it points at the PSP simulator. Unset it; "
                            "production talks only to real connectors")
    if s.psp_sim_webhook_secret:
        raise SettingsError(f"PAYCELL_PSP_SIM_WEBHOOK_SECRET {refuse}: anyone holding it could post the test "
                            "simulator's events to /psp/webhooks/simulator. Unset it")
    if not s.jwt_secret and not s.jwks_url:
        raise SettingsError(f"PAYCELL_JWT_SECRET and PAYCELL_JWKS_URL are both unset: the API could verify no "
                            f"token. Set PAYCELL_JWKS_URL (and _ISSUER, _AUDIENCE) to your identity provider, "
                            f"and/or PAYCELL_JWT_SECRET to the output of: {_GENERATE_SECRET}")
    if s.jwks_url and urlsplit(s.jwks_url).scheme != "https":
        raise SettingsError(f"PAYCELL_JWKS_URL={s.jwks_url!r} {refuse}: use the identity provider's https:// URL")
    _validate_production_hops(s, refuse)
    if s.broker_url and urlsplit(s.broker_url).password in (None, "", "guest"):
        raise SettingsError(f"PAYCELL_BROKER_URL without a password of its own {refuse}: anyone who reaches "
                            "RabbitMQ could inject payment steps. Give paycell a user with a password: "
                            "amqps://USER:PASSWORD@HOST:5671/VHOST")
    if not _redis_has_password(s.redis_url):
        raise SettingsError(f"PAYCELL_REDIS_URL without a password {refuse}: anyone who reaches Redis could "
                            "inject payment steps. Require a password on Redis (requirepass or an ACL user) and "
                            "put it in the URL: rediss://USER:PASSWORD@HOST:6379/0")


# The providers' API addresses: production talks to them over https only.
_PSP_URLS = ("stripe_api_base_url", "adyen_checkout_base_url", "adyen_payout_base_url", "paypal_api_base_url",
             "bank_api_base_url")


def _validate_production_hops(s: Settings, refuse: str) -> None:
    """Every outbound hop encrypted to a verified server (paycell.tls.hops): the providers over
    https, Postgres with sslmode=verify-full and Redis over rediss:// when they are not local."""
    from paycell.tls import hops
    for name in _PSP_URLS:
        if urlsplit(getattr(s, name)).scheme != "https":
            raise SettingsError(f"PAYCELL_{name.upper()}={getattr(s, name)!r} {refuse}: a provider is reached "
                                "over https only")
    local = [h for h in s.paypal_cert_hosts if hops.is_local(h)]
    if local:
        raise SettingsError(f"PAYCELL_PAYPAL_CERT_HOSTS naming {', '.join(local)} {refuse}: a certificate is fetched "
                            "from a loopback host over plain http (the simulator's); list PayPal's hosts only")
    databases = [("admin_database_url", s.admin_database_url)]
    if s.database_url:
        databases.append(("database_url", s.database_url))
    for name, url in databases:
        problem = hops.postgres_problem(url)
        if problem:
            raise SettingsError(f"PAYCELL_{name.upper()} {problem} ({refuse} for a server that is not local)")
    if s.broker_url and urlsplit(s.broker_url).scheme == "amqp" and not hops.is_local(urlsplit(s.broker_url).hostname):
        raise SettingsError(f"PAYCELL_BROKER_URL reaches RabbitMQ over the network in plain text: use amqps:// "
                            f"({refuse} for a server that is not local)")
    for name in ("redis_url", "rate_limit_redis_url"):
        url = getattr(s, name)
        problem = hops.redis_problem(url) if url else None
        if problem:
            raise SettingsError(f"PAYCELL_{name.upper()} {problem} ({refuse} for a server that is not local)")


def _redis_has_password(url: str) -> bool:
    parts = urlsplit(url)
    if parts.password:
        return True
    return any(k == "password" and v for k, v in parse_qsl(parts.query))
