"""What counts as a strong JWT secret (paycell.config.secret_strength): what generators make
passes, typed text, patterns and published values do not."""
from __future__ import annotations

import base64
import os
import secrets

import pytest

from paycell.config.secret_strength import generate, problem

GENERATORS = {
    "secrets.token_urlsafe(32)": lambda: secrets.token_urlsafe(32),
    "secrets.token_hex(32)": lambda: secrets.token_hex(32),
    "openssl rand -base64 32": lambda: base64.b64encode(os.urandom(32)).decode(),
    "openssl rand -hex 32, upper case": lambda: secrets.token_hex(32).upper(),
    "48 random bytes, base64url": lambda: secrets.token_urlsafe(48),
    "generate()": generate,
}


@pytest.mark.parametrize("name", GENERATORS)
def test_what_generators_make_is_strong(name):
    for _ in range(2_000):
        secret = GENERATORS[name]()
        assert problem(secret) is None, (secret, problem(secret))


WEAK = {
    "the old shipped default": "paycell-dev-secret-change-me-0123456789",
    "the docs' long wrong-secret example": "another-secret-that-is-long-enough-0123456789",
    "short (a uuid)": "3f1c2a6e-9b7d-4c1e-8f2a-5d6b7c8e9f01",
    "32 hex digits: 128 bits": secrets.token_hex(16),
    "42 base64 characters": secrets.token_urlsafe(32)[:42],
    "one character": "a" * 64,
    "few hex digits": "0101010123232323" * 4,
    "hex counting": "0123456789abcdef" * 4,
    "alphabet": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ",
    "repeated short chunk": "abcABC" * 8,
    "lower-case phrase": "this-is-my-very-secret-secret-for-paycell-prod",
    "punctuation": "correct horse battery staple, correct horse battery",
    "non-ascii": "é" * 64,
    "empty": "",
}


@pytest.mark.parametrize("name", WEAK)
def test_weak_secrets_are_refused_with_a_reason(name):
    reason = problem(WEAK[name])
    assert reason and isinstance(reason, str), name
