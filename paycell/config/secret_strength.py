"""When is a JWT signing secret strong enough: at least 256 random bits, written as text.

No check can prove that a string is random; this one pins down the form a generated secret takes
and refuses what random output essentially never looks like, so that a typed phrase, a pattern or
a value copied from documentation is caught before it signs anything. The rule:

1. Form: at least 32 bytes written as hex (>= 64 hex digits: `openssl rand -hex 32`,
   `secrets.token_hex(32)`) or as base64 / base64url (>= 43 characters, `=` padding allowed:
   `openssl rand -base64 32`, `secrets.token_urlsafe(32)`).
2. Not a known value: the old shipped default and the example values of paycell's docs.
3. Looks random. Each screen below fails for a truly random secret of that form with a
   probability under 1e-9 (bounds in the comments), but catches typed and patterned text:
   - hex: at least 10 distinct digits;
   - base64: at least 17 distinct characters, upper- and lower-case letters both present;
   - either: at most 2/3 of neighbouring characters equal or one apart in the alphabet
     ("0123456789abcdef" repeated, "aaaa...", "abcabc...").

The secret is used as given (its UTF-8 bytes are the HMAC key); decoding only measures it.
"""
from __future__ import annotations

import re
import secrets
import string

BITS_MIN = 256
HEX_CHARS_MIN = BITS_MIN // 4                 # 64
BASE64_CHARS_MIN = -(-BITS_MIN // 6)          # 43: ceil(256 / 6)

KNOWN_DEV_SECRETS = frozenset({
    "paycell-dev-secret-change-me-0123456789",  # the default paycell shipped until issue 6
    "another-secret-that-is-long-enough-0123456789",  # the test suite's "wrong secret" example
})

_HEX = re.compile(r"[0-9a-fA-F]+")
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")
_HEX_ALPHABET = "0123456789abcdef"
_BASE64_ALPHABET = string.ascii_uppercase + string.ascii_lowercase + string.digits + "+/"

# P(a random secret of n >= 64 hex digits shows <= 9 of the 16 digits) <= C(16,9)*(9/16)^64 ~ 1e-12.
HEX_DISTINCT_MIN = 10
# P(<= 16 of 64 characters in n >= 43 random base64 characters) <= C(64,16)*(16/64)^43 ~ 6e-12.
BASE64_DISTINCT_MIN = 17
# P(no upper-case letter in 43 random base64 characters) = (38/64)^43 ~ 2e-10; the same for lower.
# P(more than 2/3 of the 63 neighbour pairs of 64 random hex digits step by 0 or 1) ~ 1e-15
# (Chernoff bound, each pair steps with p = 3/16; base64: p = 3/64, smaller still).
STEP_SHARE_MAX = 2 / 3


def generate() -> str:
    """A fresh secret that passes `problem`: 32 random bytes, base64url (43 characters)."""
    return secrets.token_urlsafe(32)


def problem(secret: str) -> str | None:
    """Why `secret` is not a strong signing secret, or None when it is."""
    if secret in KNOWN_DEV_SECRETS:
        return "is a published development value"
    if _HEX.fullmatch(secret) and len(secret) >= HEX_CHARS_MIN:
        return _hex_problem(secret.lower())
    if _BASE64.fullmatch(secret) and len(secret.rstrip("=")) >= BASE64_CHARS_MIN:
        return _base64_problem(secret.rstrip("="))
    return (f"is not {BITS_MIN} bits written as text: it must be at least {HEX_CHARS_MIN} hex digits "
            f"or {BASE64_CHARS_MIN} base64/base64url characters")


def _hex_problem(secret: str) -> str | None:
    if len(set(secret)) < HEX_DISTINCT_MIN:
        return f"uses fewer than {HEX_DISTINCT_MIN} distinct hex digits: it is not random"
    return _step_problem(secret, _HEX_ALPHABET)


def _base64_problem(secret: str) -> str | None:
    if len(set(secret)) < BASE64_DISTINCT_MIN:
        return f"uses fewer than {BASE64_DISTINCT_MIN} distinct characters: it is not random"
    if not any(c.isupper() for c in secret) or not any(c.islower() for c in secret):
        return "lacks upper- or lower-case letters: it is typed text, not random base64"
    return _step_problem(secret.replace("-", "+").replace("_", "/"), _BASE64_ALPHABET)


def _step_problem(secret: str, alphabet: str) -> str | None:
    index = [alphabet.index(c) for c in secret]
    steps = sum(1 for a, b in zip(index, index[1:]) if abs(a - b) <= 1)
    if steps > STEP_SHARE_MAX * (len(index) - 1):
        return "repeats or counts through its alphabet: it is a pattern, not random"
    return None
