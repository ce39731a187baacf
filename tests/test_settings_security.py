"""Settings that must not reach a running paycell: no shipped JWT secret, weak secrets, and in
production (PAYCELL_ENV=production) everything only fit for development. Each refusal names the
PAYCELL_* variable to change and says what to set."""
from __future__ import annotations

import secrets

import pytest

from paycell.config import Settings, SettingsError, load

STRONG = secrets.token_urlsafe(32)
# A production configuration that passes: every test below breaks exactly one thing of it.
PRODUCTION = {
    "PAYCELL_ENV": "production",
    "PAYCELL_JWT_SECRET": STRONG,
    "PAYCELL_PSP_DEFAULT": "acme",
    "PAYCELL_REDIS_URL": "rediss://paycell:s3cret@cache.internal:6379/0",
    "PAYCELL_ADMIN_DATABASE_URL": "postgresql://owner:pw@db.internal:5432/paycell"
                                  "?sslmode=verify-full&sslrootcert=/etc/paycell/db-ca.pem",
}


def refusal(env: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as caught:
        load(env)
    return str(caught.value)


def test_no_jwt_secret_ships_with_paycell():
    assert Settings().jwt_secret == ""
    assert load({}).jwt_secret == ""


@pytest.mark.parametrize("secret", ["paycell-dev-secret-change-me-0123456789", "x" * 42, "0123456789abcdef" * 4,
                                    "this-is-my-very-secret-secret-for-paycell-prod"])
@pytest.mark.parametrize("env", ["development", "production"])
def test_a_weak_or_known_jwt_secret_is_refused_in_every_mode(secret, env):
    message = refusal({**PRODUCTION, "PAYCELL_ENV": env, "PAYCELL_JWT_SECRET": secret})
    assert message.startswith("PAYCELL_JWT_SECRET ") and "secrets.token_urlsafe(32)" in message


def test_a_token_lifetime_over_the_cap_is_refused():
    message = refusal({"PAYCELL_JWT_TTL_S": "90000", "PAYCELL_JWT_LIFETIME_S_MAX": "86400"})
    assert "PAYCELL_JWT_TTL_S" in message and "PAYCELL_JWT_LIFETIME_S_MAX" in message


def test_the_production_example_itself_loads():
    settings = load(PRODUCTION)
    assert settings.env == "production" and settings.jwt_secret == STRONG


def test_the_mode_is_development_by_default_and_nothing_else_is_accepted():
    assert load({}).env == "development"
    assert "PAYCELL_ENV" in refusal({"PAYCELL_ENV": "prod"})


@pytest.mark.parametrize("case, change, variable", [
    ("the simulator connector (the default)", {"PAYCELL_PSP_DEFAULT": None}, "PAYCELL_PSP_DEFAULT"),
    ("the simulator connector, named", {"PAYCELL_PSP_DEFAULT": "simulator"}, "PAYCELL_PSP_DEFAULT"),
    ("a simulator URL", {"PAYCELL_PSP_SIM_URL": "http://127.0.0.1:8090"}, "PAYCELL_PSP_SIM_URL"),
    ("the simulator's webhook secret", {"PAYCELL_PSP_SIM_WEBHOOK_SECRET": "whsec_sim_0123"},
     "PAYCELL_PSP_SIM_WEBHOOK_SECRET"),
    ("no secret and no identity provider", {"PAYCELL_JWT_SECRET": None}, "PAYCELL_JWT_SECRET"),
    ("Redis without a password", {"PAYCELL_REDIS_URL": "redis://cache.internal:6379/0"}, "PAYCELL_REDIS_URL"),
    ("Redis with a user but no password", {"PAYCELL_REDIS_URL": "redis://paycell@cache.internal/0"},
     "PAYCELL_REDIS_URL"),
    ("Redis on a socket without a password", {"PAYCELL_REDIS_URL": "unix:///run/redis.sock?db=0"},
     "PAYCELL_REDIS_URL"),
    ("an identity provider over plain http", {"PAYCELL_JWKS_URL": "http://127.0.0.1:9000/jwks.json",
                                              "PAYCELL_JWKS_ISSUER": "https://idp/", "PAYCELL_JWKS_AUDIENCE": "api"},
     "PAYCELL_JWKS_URL"),
])
def test_production_refuses_development_settings(case, change, variable):
    env = {k: v for k, v in {**PRODUCTION, **change}.items() if v is not None}
    message = refusal(env)
    assert message.startswith(variable), (case, message)


@pytest.mark.parametrize("redis_url", ["rediss://:pw@cache.internal:6379/0", "rediss://user:pw@cache.internal/0",
                                       "redis://:pw@127.0.0.1:6379/0", "unix:///run/redis.sock?db=0&password=pw"])
def test_production_accepts_redis_with_a_password(redis_url):
    assert load({**PRODUCTION, "PAYCELL_REDIS_URL": redis_url}).redis_url == redis_url


def test_production_may_verify_tokens_only_through_the_identity_provider():
    env = {k: v for k, v in PRODUCTION.items() if k != "PAYCELL_JWT_SECRET"}
    env |= {"PAYCELL_JWKS_URL": "https://idp.example/.well-known/jwks.json",
            "PAYCELL_JWKS_ISSUER": "https://idp.example/", "PAYCELL_JWKS_AUDIENCE": "paycell"}
    assert load(env).jwks_url.startswith("https://")


@pytest.mark.parametrize("change, variable", [
    ({"PAYCELL_JWKS_ISSUER": ""}, "PAYCELL_JWKS_ISSUER"),
    ({"PAYCELL_JWKS_AUDIENCE": ""}, "PAYCELL_JWKS_AUDIENCE"),
    ({"PAYCELL_JWKS_URL": "http://idp.example/jwks.json"}, "PAYCELL_JWKS_URL"),
    ({"PAYCELL_JWKS_URL": "file:///etc/passwd"}, "PAYCELL_JWKS_URL"),
    ({"PAYCELL_JWKS_ALGORITHMS": "RS256,HS256"}, "PAYCELL_JWKS_ALGORITHMS"),
    ({"PAYCELL_JWKS_ALGORITHMS": "none"}, "PAYCELL_JWKS_ALGORITHMS"),
])
def test_the_identity_provider_settings_are_checked_in_development_too(change, variable):
    env = {"PAYCELL_JWKS_URL": "http://127.0.0.1:9000/jwks.json", "PAYCELL_JWKS_ISSUER": "https://idp/",
           "PAYCELL_JWKS_AUDIENCE": "paycell"}
    assert load(env).jwks_url  # loopback http is fine in development
    assert variable in refusal(env | change)


@pytest.mark.parametrize("broker_url", ["", "amqp://guest:guest@127.0.0.1:5672/%2F", "amqps://pc:pw@mq.internal/paycell"])
def test_the_broker_is_redis_by_default_or_rabbitmq_by_an_amqp_url(broker_url):
    assert load({"PAYCELL_BROKER_URL": broker_url}).broker_url == broker_url


def test_a_broker_url_that_is_not_amqp_is_refused():
    message = refusal({"PAYCELL_BROKER_URL": "redis://127.0.0.1:6379/0"})
    assert message.startswith("PAYCELL_BROKER_URL ") and "amqp://" in message


@pytest.mark.parametrize("broker_url, says", [
    ("amqp://pc:pw@mq.internal:5672/paycell", "plain text"),     # off this machine, unencrypted
    ("amqps://mq.internal/paycell", "password"),                 # pika's default guest/guest
    ("amqps://guest:guest@mq.internal/paycell", "password"),
])
def test_production_refuses_a_rabbitmq_anyone_could_read_or_write(broker_url, says):
    message = refusal({**PRODUCTION, "PAYCELL_BROKER_URL": broker_url})
    assert message.startswith("PAYCELL_BROKER_URL ") and says in message, message


@pytest.mark.parametrize("broker_url", ["amqps://pc:pw@mq.internal:5671/paycell", "amqp://pc:pw@127.0.0.1:5672/paycell"])
def test_production_accepts_rabbitmq_over_tls_or_on_this_machine_with_a_password(broker_url):
    assert load({**PRODUCTION, "PAYCELL_BROKER_URL": broker_url}).broker_url == broker_url


def test_rabbitmq_queues_are_classic_unless_quorum_is_asked_for():
    assert load({}).rabbitmq_queue_type == "classic"
    assert load({"PAYCELL_RABBITMQ_QUEUE_TYPE": "quorum"}).rabbitmq_queue_type == "quorum"
    assert refusal({"PAYCELL_RABBITMQ_QUEUE_TYPE": "stream"}).startswith("PAYCELL_RABBITMQ_QUEUE_TYPE ")
