"""Every route but /health needs a valid bearer token, and a caller sees only its own payments."""
from __future__ import annotations

import secrets
import time
import uuid

import jwt
import msgspec
import pytest

from paycell.config import SettingsError
from paycell.http.app import create_app
from paycell.http.auth import issue_token
from tests.helpers import auth_header, new_user
from tests.api.support import PAYMENTS, WALLET, call, error_of, get_as, payer, payin, post_payment, rows_for

OTHER_SECRET = secrets.token_urlsafe(32)
OLD_DEFAULT_SECRET = "paycell-dev-secret-change-me-0123456789"  # what paycell shipped until issue 6


def _claims(settings, user: str, **over) -> dict:
    now = int(time.time())
    claims = {"sub": user, "iat": now, "exp": now + 600, "iss": settings.jwt_issuer, "aud": settings.jwt_audience}
    return {k: v for k, v in (claims | over).items() if v is not None}  # None drops a claim


def _bad_tokens(settings, user: str) -> dict[str, str]:
    now = int(time.time())
    secret = settings.jwt_secret

    def hs256(**over) -> str:
        return "Bearer " + jwt.encode(_claims(settings, user, **over), secret, "HS256")

    return {
        "garbage": "Bearer not-a-jwt",
        "empty bearer": "Bearer ",
        "basic scheme": "Basic dXNlcjpwYXNz",
        "bare token": issue_token(settings, user),
        "expired": hs256(iat=now - 120, exp=now - 60),
        "other secret": "Bearer " + jwt.encode(_claims(settings, user), OTHER_SECRET, "HS256"),
        "old default secret": "Bearer " + jwt.encode(_claims(settings, user), OLD_DEFAULT_SECRET, "HS256"),
        "alg none": "Bearer " + jwt.encode(_claims(settings, user), None, "none"),
        "alg HS512": "Bearer " + jwt.encode(_claims(settings, user), secret, "HS512"),
        "no exp": hs256(exp=None),
        "no sub": hs256(sub=None),
        "no iat": hs256(iat=None),
        "no iss": hs256(iss=None),
        "no aud": hs256(aud=None),
        "other issuer": hs256(iss="https://someone-else.example/"),
        "other audience": hs256(aud="another-api"),
        "issued in the future": hs256(iat=now + 3600, exp=now + 4200),
        "lives too long": hs256(exp=now + settings.jwt_lifetime_s_max + 60),
        "exp as a string": hs256(exp=str(now + 600)),
        "sub not a user id": hs256(sub="no spaces allowed"),
        "roles not a list": hs256(roles="operator"),
        "roles not strings": hs256(roles=[1, 2]),
        "tampered": "Bearer " + _tampered(issue_token(settings, user), issue_token(settings, "mallory")),
    }


def _tampered(token: str, other: str) -> str:
    """`token`'s header and signature around `other`'s claims."""
    header, _, signature = token.split(".")
    return f"{header}.{other.split('.')[1]}.{signature}"


BAD_TOKEN_CASES = ["missing", "garbage", "empty bearer", "basic scheme", "bare token", "expired", "other secret",
                   "old default secret", "alg none", "alg HS512", "no exp", "no sub", "no iat", "no iss", "no aud",
                   "other issuer", "other audience", "issued in the future", "lives too long", "exp as a string",
                   "sub not a user id", "tampered"]


# The HS512 and old-default cases sign with keys too short on purpose: the key or algorithm is what is wrong.
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("case", BAD_TOKEN_CASES)
async def test_a_request_without_a_valid_token_is_unauthenticated(api, settings, pool, case):
    user = new_user()
    headers = {} if case == "missing" else {"Authorization": _bad_tokens(settings, user)[case]}
    for method, path, body in (("POST", PAYMENTS, payin(user)), ("GET", PAYMENTS, None),
                               ("GET", f"{PAYMENTS}/{uuid.uuid4()}", None), ("GET", WALLET, None)):
        reply = await call(api, method, path, headers=headers, json=body)
        assert error_of(reply) == (401, "unauthenticated"), (method, path, reply.json)
        assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    assert await rows_for(pool, user) == (0, 0, 0)


async def test_health_is_public(api):
    reply = await call(api, "GET", "/health")
    assert (reply.status, reply.json) == (200, {"ok": True})


async def test_another_users_payment_is_not_found_exactly_like_a_missing_one(api, settings):
    alice, mallory = await payer(api, settings, "alice"), new_user("mallory")
    created = await post_payment(api, settings, alice, payin(alice))
    assert created.status == 202
    location = created.headers["Location"]
    assert (await get_as(api, settings, alice, location)).status == 200
    theirs = await get_as(api, settings, mallory, location)
    missing = await get_as(api, settings, mallory, f"{PAYMENTS}/{uuid.uuid4()}")
    malformed = await get_as(api, settings, mallory, f"{PAYMENTS}/not-a-uuid")
    assert error_of(theirs) == error_of(missing) == error_of(malformed) == (404, "not_found")
    assert theirs.json == missing.json == malformed.json
    listed = await get_as(api, settings, mallory, PAYMENTS)
    assert listed.json["data"] == []


async def test_a_body_naming_another_user_is_forbidden(api, settings, pool):
    alice, bob = new_user("alice"), new_user("bob")
    reply = await post_payment(api, settings, alice, payin(bob))
    assert error_of(reply) == (403, "forbidden")
    assert reply.json["error"]["field"] == "user_id"
    assert await rows_for(pool, alice) == await rows_for(pool, bob) == (0, 0, 0)


async def test_the_owner_sees_the_payment_with_its_orders_and_history(api, settings):
    user = await payer(api, settings)
    created = await post_payment(api, settings, user, payin(user, amount="7.05"))
    reply = await call(api, "GET", created.headers["Location"], headers=auth_header(settings, user))
    assert reply.status == 200
    payment = reply.json
    assert payment["payment_id"] == created.json["payment_id"] and payment["user_id"] == user
    assert (payment["amount"], payment["currency"], payment["status"]) == ("7.05", "USD", "processing")
    assert [o["payment_order_status"] for o in payment["orders"]] == ["requested"]
    assert [e["type"] for e in payment["events"]] == ["payment.requested"]


def test_issue_token_refuses_what_it_could_not_authenticate(settings):
    with pytest.raises(ValueError):
        issue_token(settings, "not a user id")
    with pytest.raises(ValueError):
        issue_token(settings, "alice", ttl_s=0)
    with pytest.raises(ValueError, match="PAYCELL_JWT_LIFETIME_S_MAX"):
        issue_token(settings, "alice", ttl_s=settings.jwt_lifetime_s_max + 1)
    with pytest.raises(ValueError, match="PAYCELL_JWT_SECRET"):
        issue_token(msgspec.structs.replace(settings, jwt_secret=""), "alice")


async def test_a_token_within_the_leeway_and_the_lifetime_cap_is_accepted(api, settings):
    user, now = new_user(), int(time.time())
    claims = _claims(settings, user, iat=now + settings.jwt_leeway_s // 2, exp=now + settings.jwt_lifetime_s_max)
    token = jwt.encode(claims, settings.jwt_secret, "HS256")
    reply = await call(api, "GET", WALLET, headers={"Authorization": f"Bearer {token}"})
    assert reply.status == 200, reply.json


def test_the_api_refuses_to_start_when_it_could_verify_no_token(settings):
    bare = msgspec.structs.replace(settings, jwt_secret="", jwks_url="")
    with pytest.raises(SettingsError, match="PAYCELL_JWT_SECRET"):
        create_app(bare)


async def test_the_openapi_description_is_public_and_names_every_route_and_shape(api):
    resp = await api.get("/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) >= {"/payments/payment/v1", "/payments/payment/v1/{payment_id}",
                                 "/payments/wallet/v1", "/health"}
    payment_in = doc["components"]["schemas"]["PaymentIn"]
    assert set(payment_in["required"]) == {"payment_id", "user_id", "from_acct", "to_acct", "amount", "currency",
                                           "payment_option"}
    assert payment_in["properties"]["amount"]["type"] == "string"  # decimal strings, never numbers
    assert payment_in.get("additionalProperties") is False  # unknown fields are refused


async def test_roles_come_from_the_token_and_are_remembered_with_it(settings):
    from paycell.http.auth import OPERATOR, Authenticator
    authenticator = Authenticator(settings)
    operator = "Bearer " + issue_token(settings, "ops-alice", roles=(OPERATOR,))
    user = "Bearer " + issue_token(settings, "alice")
    for _ in range(2):  # verified, then from the LRU of verified tokens
        assert await authenticator.authenticate(operator) == ("ops-alice", frozenset({OPERATOR}))
        assert await authenticator.authenticate(user) == ("alice", frozenset())
