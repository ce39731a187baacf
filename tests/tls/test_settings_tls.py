"""The transport settings, and what production refuses: a hop off this machine that is not
encrypted to a verified server (a provider over http, Postgres without sslmode=verify-full, Redis
without rediss:// or with its verification turned off in the URL). Each refusal names its variable."""
from __future__ import annotations

import base64
import hashlib

import pytest

from paycell.config import SettingsError, load
from tests.test_settings_security import PRODUCTION

PIN = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
BACKUP_PIN = base64.b64encode(hashlib.sha256(b"a backup key").digest()).decode()
DB_CA = "?sslmode=verify-full&sslrootcert=/etc/paycell/db-ca.pem"


def refusal(env: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as caught:
        load(env)
    return str(caught.value)


@pytest.mark.parametrize("case, change, variable", [
    ("a provider over http", {"PAYCELL_STRIPE_API_BASE_URL": "http://api.stripe.com"}, "PAYCELL_STRIPE_API_BASE_URL"),
    ("Adyen's payouts over http", {"PAYCELL_ADYEN_PAYOUT_BASE_URL": "http://pal-test.adyen.com/pal/servlet/Payout/v68"},
     "PAYCELL_ADYEN_PAYOUT_BASE_URL"),
    ("Postgres without sslmode", {"PAYCELL_ADMIN_DATABASE_URL": "postgresql://owner:pw@db.internal/paycell"},
     "PAYCELL_ADMIN_DATABASE_URL"),
    ("Postgres encrypted but unverified",
     {"PAYCELL_ADMIN_DATABASE_URL": "postgresql://o:pw@db.internal/p?sslmode=require"}, "PAYCELL_ADMIN_DATABASE_URL"),
    ("Postgres verifying the CA but not the host",
     {"PAYCELL_ADMIN_DATABASE_URL": "postgresql://o:pw@db.internal/p?sslmode=verify-ca"}, "PAYCELL_ADMIN_DATABASE_URL"),
    ("Postgres down to TLS 1.1",
     {"PAYCELL_ADMIN_DATABASE_URL": f"postgresql://o:pw@db.internal/p{DB_CA}&ssl_min_protocol_version=TLSv1.1"},
     "PAYCELL_ADMIN_DATABASE_URL"),
    ("one remote host among local ones",
     {"PAYCELL_ADMIN_DATABASE_URL": "postgresql://o:pw@127.0.0.1:5432,db.internal:5432/p"},
     "PAYCELL_ADMIN_DATABASE_URL"),
    ("the app role's URL in plain text", {"PAYCELL_DATABASE_URL": "postgresql://app:pw@db.internal/paycell"},
     "PAYCELL_DATABASE_URL"),
    ("Redis in plain text", {"PAYCELL_REDIS_URL": "redis://:pw@cache.internal:6379/0"}, "PAYCELL_REDIS_URL"),
    ("rediss without certificate checks", {"PAYCELL_REDIS_URL": "rediss://:pw@cache.internal/0?ssl_cert_reqs=none"},
     "PAYCELL_REDIS_URL"),
    ("rediss without the host check",
     {"PAYCELL_REDIS_URL": "rediss://:pw@cache.internal/0?ssl_check_hostname=false"}, "PAYCELL_REDIS_URL"),
    ("rediss down to TLS 1.1", {"PAYCELL_REDIS_URL": "rediss://:pw@cache.internal/0?ssl_min_version=770"},
     "PAYCELL_REDIS_URL"),
    ("PayPal's certificate from a loopback host (over http)",
     {"PAYCELL_PAYPAL_CERT_HOSTS": "api.paypal.com,127.0.0.1"}, "PAYCELL_PAYPAL_CERT_HOSTS"),
    ("the rate limits' Redis in plain text", {"PAYCELL_RATE_LIMIT_REDIS_URL": "redis://:pw@limits.internal/0"},
     "PAYCELL_RATE_LIMIT_REDIS_URL"),
])
def test_production_refuses_a_hop_that_does_not_verify_its_server(case, change, variable):
    message = refusal({**PRODUCTION, **change})
    assert message.startswith(variable) and "PAYCELL_ENV=production" in message, (case, message)


@pytest.mark.parametrize("change", [
    {"PAYCELL_ADMIN_DATABASE_URL": "postgresql://owner:pw@127.0.0.1:5432/paycell"},  # a local sidecar
    {"PAYCELL_ADMIN_DATABASE_URL": "postgresql:///paycell?host=/run/postgresql"},  # a Unix socket
    {"PAYCELL_ADMIN_DATABASE_URL": f"postgresql://o:pw@db-a.internal:5432,db-b.internal:5432/p{DB_CA}"},
    {"PAYCELL_ADMIN_DATABASE_URL": f"postgresql://o:pw@db.internal/p{DB_CA}&ssl_min_protocol_version=TLSv1.3"},
    {"PAYCELL_REDIS_URL": "redis://:pw@[::1]:6379/0"},
    {"PAYCELL_REDIS_URL": "rediss://:pw@cache.internal/0?ssl_min_version=772"},
    {"PAYCELL_TLS_BEHIND_PROXY": "true"},
])
def test_production_accepts_local_or_verified_hops(change):
    load({**PRODUCTION, **change})


def test_development_keeps_plain_hops():
    settings = load({"PAYCELL_ADMIN_DATABASE_URL": "postgresql://o@db.internal/p",
                     "PAYCELL_REDIS_URL": "redis://cache.internal/0",
                     "PAYCELL_STRIPE_API_BASE_URL": "http://127.0.0.1:8090/stripe"})
    assert settings.redis_url.startswith("redis://") and not settings.tls_behind_proxy


def test_tls_settings_load_and_are_checked():
    settings = load({"PAYCELL_TLS_CERT_FILE": "/etc/paycell/tls.pem", "PAYCELL_TLS_KEY_FILE": "/etc/paycell/tls.key",
                     "PAYCELL_TLS_BEHIND_PROXY": "false", "PAYCELL_TLS_HSTS_MAX_AGE_S": "0",
                     "PAYCELL_PSP_TLS_PINS": f"stripe:{PIN}|{BACKUP_PIN},adyen:{PIN}"})
    assert settings.psp_tls_pins == {"stripe": f"{PIN}|{BACKUP_PIN}", "adyen": PIN}
    assert settings.tls_hsts_max_age_s == 0 and settings.tls_cert_file == "/etc/paycell/tls.pem"
    assert "PAYCELL_TLS_KEY_FILE" in refusal({"PAYCELL_TLS_CERT_FILE": "/etc/paycell/tls.pem"})
    assert "PAYCELL_TLS_CERT_FILE" in refusal({"PAYCELL_TLS_KEY_FILE": "/etc/paycell/tls.key"})
    assert "PAYCELL_TLS_HSTS_MAX_AGE_S" in refusal({"PAYCELL_TLS_HSTS_MAX_AGE_S": "-1"})
    assert "'acme' is not a connector" in refusal({"PAYCELL_PSP_TLS_PINS": f"acme:{PIN}"})
    assert "not a base64 SHA-256" in refusal({"PAYCELL_PSP_TLS_PINS": "stripe:sha256/abc"})
    assert "PAYCELL_TLS_BEHIND_PROXY" in refusal({"PAYCELL_TLS_BEHIND_PROXY": "maybe"})
    for name in ("PAYCELL_TLS_CA_FILE", "PAYCELL_TLS_CRL_FILE"):
        assert f"{name}='/nonexistent/x.pem' is not a readable file" in refusal({name: "/nonexistent/x.pem"})
