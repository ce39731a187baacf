"""Tokens from an identity provider: RS256, ES256 and EdDSA keys served as a JWKS over real HTTP on
127.0.0.1 by the test itself, keys made with `cryptography`.

The JWKS server runs on the test's own event loop, the same loop as the API: if the API fetched
keys on the loop (PyJWKClient is blocking urllib), the server could not answer and every test
here would hang until the fetch timed out."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from paycell.config import load
from paycell.http.app import create_app
from tests.api.support import WALLET, call, error_of
from tests.helpers import new_user

ISSUER = "https://idp.paycell.test/"
AUDIENCE = "paycell-users"


def _private(alg: str):
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def _jwk(alg: str, kid: str, private) -> dict:
    algorithm = jwt.get_algorithm_by_name(alg)
    return json.loads(algorithm.to_jwk(private.public_key())) | {"kid": kid, "use": "sig"}


class Provider:
    """A JWKS endpoint whose keys, availability and delay a test controls; counts its fetches."""

    def __init__(self):
        self.private: dict[str, tuple[str, object]] = {}  # kid -> (alg, private key)
        self.published: list[dict] = []
        self.fetches = 0
        self.failing = False
        self.delay_s = 0.0

    def add_key(self, alg: str, kid: str | None = None, *, publish: bool = True) -> str:
        kid = kid or f"{alg.lower()}-{len(self.private)}"
        key = _private(alg)
        self.private[kid] = (alg, key)
        if publish:
            self.published.append(_jwk(alg, kid, key))
        return kid

    def token(self, kid: str, user: str, *, alg: str | None = None, header_kid: str | None = None, **over) -> str:
        """A token signed with key `kid`; its header names `header_kid` when given."""
        key_alg, key = self.private[kid]
        now = int(time.time())
        claims = {"sub": user, "iat": now, "exp": now + 600, "iss": ISSUER, "aud": AUDIENCE} | over
        return jwt.encode(claims, key, algorithm=alg or key_alg, headers={"kid": header_kid or kid})

    async def handle(self, request: web.Request) -> web.Response:
        self.fetches += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.failing:
            return web.json_response({"error": "down"}, status=503)
        return web.json_response({"keys": self.published})


@pytest.fixture
async def provider(aiohttp_server):
    idp = Provider()
    for alg in ("RS256", "ES256", "EdDSA"):
        idp.add_key(alg, kid=alg.lower())
    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", idp.handle)
    server = await aiohttp_server(app)
    idp.url = str(server.make_url("/.well-known/jwks.json"))
    return idp


async def _api(aiohttp_client, provider, **over):
    settings = load(jwks_url=provider.url, jwks_issuer=ISSUER, jwks_audience=AUDIENCE, **over)
    return await aiohttp_client(create_app(settings)), settings


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("kid", ["rs256", "es256", "eddsa"])
async def test_a_token_signed_by_the_identity_provider_is_accepted(aiohttp_client, migrated, provider, kid):
    api, _ = await _api(aiohttp_client, provider)
    reply = await call(api, "GET", WALLET, headers=bearer(provider.token(kid, new_user())))
    assert reply.status == 200, reply.json
    assert provider.fetches == 1  # fetched at start-up, then cached


async def test_hs256_tokens_keep_working_beside_the_identity_provider(aiohttp_client, migrated, provider):
    api, settings = await _api(aiohttp_client, provider)
    from paycell.http.auth import issue_token
    reply = await call(api, "GET", WALLET, headers=bearer(issue_token(settings, new_user())))
    assert reply.status == 200, reply.json


def _hs256_signed_with(key: bytes, claims: dict, kid: str) -> str:
    """An HS256 token whose HMAC key is `key`, written by hand: PyJWT refuses to sign with a public key."""
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = b64(json.dumps(claims).encode())
    signature = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


def _forged_tokens(provider: Provider, settings, user: str) -> dict[str, str]:
    now = int(time.time())
    claims = {"sub": user, "iat": now, "exp": now + 600, "iss": ISSUER, "aud": AUDIENCE}
    rsa_public = provider.private["rs256"][1].public_key()
    pem = rsa_public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    provider.add_key("RS256", kid="unpublished", publish=False)
    impostor = _private("RS256")
    return {
        "alg none": jwt.encode(claims, None, algorithm="none", headers={"kid": "rs256"}),
        "HS256 signed with the public key (PEM)": _hs256_signed_with(pem, claims, "rs256"),
        "HS256 signed with the public key (JWK)": _hs256_signed_with(
            json.dumps(_jwk("RS256", "rs256", provider.private["rs256"][1])).encode(), claims, "rs256"),
        "unknown kid": provider.token("unpublished", user),
        "no kid": jwt.encode(claims, provider.private["rs256"][1], algorithm="RS256"),
        "a known kid, another key": jwt.encode(claims, impostor, algorithm="RS256", headers={"kid": "rs256"}),
        "RS256 header on the EC key": jwt.encode(claims, impostor, algorithm="RS256", headers={"kid": "es256"}),
        "PS256 with the RSA key": provider.token("rs256", user, alg="PS256"),
        "other issuer": provider.token("rs256", user, iss="https://evil.example/"),
        "paycell's own issuer": provider.token("rs256", user, iss=settings.jwt_issuer),
        "other audience": provider.token("rs256", user, aud="another-api"),
        "lives too long": provider.token("es256", user, exp=now + settings.jwt_lifetime_s_max + 60),
        "expired": provider.token("eddsa", user, iat=now - 700, exp=now - 100),
        "no iat": jwt.encode({k: v for k, v in claims.items() if k != "iat"}, provider.private["eddsa"][1],
                             algorithm="EdDSA", headers={"kid": "eddsa"}),
    }


FORGED = ["alg none", "HS256 signed with the public key (PEM)", "HS256 signed with the public key (JWK)",
          "unknown kid", "no kid", "a known kid, another key", "RS256 header on the EC key", "PS256 with the RSA key",
          "other issuer", "paycell's own issuer", "other audience", "lives too long", "expired", "no iat"]


@pytest.mark.parametrize("case", FORGED)
async def test_a_token_the_identity_provider_did_not_sign_for_us_is_refused(aiohttp_client, migrated, provider,
                                                                           case):
    api, settings = await _api(aiohttp_client, provider)
    token = _forged_tokens(provider, settings, new_user())[case]
    reply = await call(api, "GET", WALLET, headers=bearer(token))
    assert error_of(reply) == (401, "unauthenticated"), (case, reply.json)


async def test_algorithm_confusion_is_refused_even_without_an_hs256_secret(aiohttp_client, migrated, provider):
    api, settings = await _api(aiohttp_client, provider, jwt_secret="")
    forged = _forged_tokens(provider, settings, new_user())["HS256 signed with the public key (PEM)"]
    reply = await call(api, "GET", WALLET, headers=bearer(forged))
    assert error_of(reply) == (401, "unauthenticated")
    assert "algorithm" in reply.json["error"]["message"]


async def test_unknown_key_ids_refetch_the_keys_at_most_once_per_refresh_interval(aiohttp_client, migrated, provider):
    api, _ = await _api(aiohttp_client, provider, jwks_refresh_s_min=3600)
    provider.add_key("ES256", kid="never-published", publish=False)
    replies = await asyncio.gather(*(
        call(api, "GET", WALLET, headers=bearer(provider.token("never-published", new_user(), header_kid=f"made-up-{i}")))
        for i in range(40)))
    assert {error_of(r) for r in replies} == {(401, "unauthenticated")}
    assert provider.fetches == 2  # start-up, then one refresh for the first unknown kid


async def test_a_rotated_key_is_fetched_when_a_token_first_names_it(aiohttp_client, migrated, provider):
    api, _ = await _api(aiohttp_client, provider, jwks_refresh_s_min=3600)
    rotated = provider.add_key("RS256", kid="rotated-2026")
    user = new_user()
    for _ in range(3):
        reply = await call(api, "GET", WALLET, headers=bearer(provider.token(rotated, user)))
        assert reply.status == 200, reply.json
    assert provider.fetches == 2


async def test_the_keys_are_fetched_again_when_the_cache_expires(aiohttp_client, migrated, provider):
    api, _ = await _api(aiohttp_client, provider, jwks_cache_s=1)
    token = provider.token("es256", new_user())
    assert (await call(api, "GET", WALLET, headers=bearer(token))).status == 200
    await asyncio.sleep(1.1)
    assert (await call(api, "GET", WALLET, headers=bearer(token))).status == 200
    assert provider.fetches == 2


async def test_an_unreachable_provider_is_a_503_to_retry_and_known_keys_keep_working(aiohttp_client, migrated,
                                                                                      provider):
    api, _ = await _api(aiohttp_client, provider, jwks_cache_s=1, jwks_refresh_s_min=3600)
    known = provider.token("rs256", new_user())
    assert (await call(api, "GET", WALLET, headers=bearer(known))).status == 200
    provider.failing = True
    await asyncio.sleep(1.1)  # the cached set expires; the provider now answers 503
    assert (await call(api, "GET", WALLET, headers=bearer(known))).status == 200  # the last set still verifies
    rotated = provider.add_key("EdDSA", kid="while-down")
    reply = await call(api, "GET", WALLET, headers=bearer(provider.token(rotated, new_user())))
    assert error_of(reply) == (503, "service_unavailable")
    assert reply.headers["Retry-After"]
    fetches = provider.fetches
    for _ in range(5):  # asked again at most once per refresh interval, not once per request
        assert (await call(api, "GET", WALLET, headers=bearer(provider.token(rotated, new_user())))).status == 503
    assert provider.fetches == fetches


async def test_a_slow_provider_does_not_stall_other_requests(aiohttp_client, migrated, provider):
    api, _ = await _api(aiohttp_client, provider)
    provider.delay_s = 0.5
    rotated = provider.add_key("ES256", kid="slow")
    done: list[str] = []

    async def authenticated():
        reply = await call(api, "GET", WALLET, headers=bearer(provider.token(rotated, new_user())))
        done.append(f"wallet {reply.status}")

    async def public():
        await asyncio.sleep(0.05)  # after the authenticated request has started its key lookup
        reply = await call(api, "GET", "/openapi.json")
        done.append(f"openapi {reply.status}")

    await asyncio.gather(authenticated(), public())
    assert done == ["openapi 200", "wallet 200"]
