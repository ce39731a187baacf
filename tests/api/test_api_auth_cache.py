"""The web remembers verified tokens (http/auth.py): a repeated token skips the signature check,
yet is refused once it expires, and an identity-provider token stops working once its key leaves
the provider's set, exactly as without the cache."""
from __future__ import annotations

import asyncio
import time

import jwt
import pytest

from paycell.config import SettingsError, load
from paycell.http.app import create_app
from tests.api.conftest import parked
from tests.api.support import WALLET, call, error_of
from tests.api.test_api_jwks import AUDIENCE, ISSUER, bearer, provider  # noqa: F401 (a fixture)
from tests.helpers import new_user


@pytest.fixture
def decodes(monkeypatch) -> list[str]:
    """Every token PyJWT verifies (a spy: the real decode runs)."""
    seen: list[str] = []
    real = jwt.decode

    def spy(token, *args, **kwargs):
        seen.append(token)
        return real(token, *args, **kwargs)
    monkeypatch.setattr(jwt, "decode", spy)
    return seen


def _token(settings, user: str, *, ttl_s: int, now: int | None = None) -> str:
    now = int(time.time()) if now is None else now
    claims = {"sub": user, "iat": now, "exp": now + ttl_s, "iss": settings.jwt_issuer, "aud": settings.jwt_audience}
    return jwt.encode(claims, settings.jwt_secret, "HS256")


async def test_a_repeated_token_is_verified_once(aiohttp_client, migrated, decodes):
    settings = parked(migrated)
    api = await aiohttp_client(create_app(settings))
    token = _token(settings, new_user(), ttl_s=600)
    for _ in range(3):
        reply = await call(api, "GET", WALLET, headers=bearer(token))
        assert reply.status == 200, reply.json
    assert decodes == [token]


async def test_a_remembered_token_is_refused_once_it_expires(aiohttp_client, migrated, decodes):
    settings = parked(migrated, jwt_leeway_s=0)
    api = await aiohttp_client(create_app(settings))
    now = int(time.time())
    token = _token(settings, new_user(), ttl_s=2, now=now)
    assert (await call(api, "GET", WALLET, headers=bearer(token))).status == 200
    await asyncio.sleep(max(0.0, now + 2 - time.time()) + 0.1)
    reply = await call(api, "GET", WALLET, headers=bearer(token))
    assert error_of(reply) == (401, "unauthenticated"), reply.json
    assert "expired" in reply.json["error"]["message"]
    assert decodes == [token]  # refused from memory, by its exp


async def test_with_the_cache_off_every_request_verifies_its_token(aiohttp_client, migrated, decodes):
    settings = parked(migrated, jwt_verified_cache_entries_max=0)
    api = await aiohttp_client(create_app(settings))
    token = _token(settings, new_user(), ttl_s=600)
    for _ in range(2):
        assert (await call(api, "GET", WALLET, headers=bearer(token))).status == 200
    assert decodes == [token, token]


async def test_a_remembered_token_stops_when_its_key_leaves_the_providers_set(aiohttp_client, migrated, provider):
    settings = load(jwks_url=provider.url, jwks_issuer=ISSUER, jwks_audience=AUDIENCE, jwks_cache_s=1)
    api = await aiohttp_client(create_app(settings))
    token = provider.token("es256", new_user())
    assert (await call(api, "GET", WALLET, headers=bearer(token))).status == 200
    provider.published = [k for k in provider.published if k["kid"] != "es256"]  # withdrawn
    assert (await call(api, "GET", WALLET, headers=bearer(token))).status == 200  # the set in hand still has it
    await asyncio.sleep(1.1)  # the set in hand is stale: the next token fetches it again
    reply = await call(api, "GET", WALLET, headers=bearer(token))
    assert error_of(reply) == (401, "unauthenticated"), reply.json


async def test_a_key_replaced_under_the_same_kid_verifies_remembered_tokens_again(aiohttp_client, migrated,
                                                                                  provider):
    settings = load(jwks_url=provider.url, jwks_issuer=ISSUER, jwks_audience=AUDIENCE, jwks_cache_s=1)
    api = await aiohttp_client(create_app(settings))
    token = provider.token("rs256", new_user())
    assert (await call(api, "GET", WALLET, headers=bearer(token))).status == 200
    provider.published = [k for k in provider.published if k["kid"] != "rs256"]
    provider.add_key("RS256", kid="rs256")  # new key material, same key id
    await asyncio.sleep(1.1)
    reply = await call(api, "GET", WALLET, headers=bearer(token))
    assert error_of(reply) == (401, "unauthenticated"), reply.json


def test_a_negative_cache_size_is_refused():
    with pytest.raises(SettingsError, match="PAYCELL_JWT_VERIFIED_CACHE_ENTRIES_MAX"):
        load(jwt_verified_cache_entries_max=-1)
