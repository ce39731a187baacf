"""Page cursors for the payment list: signed, so a client can only hand back one it was given.
(Lists ordered by something else, such as the operator's rule-set versions, use the position
cursors at the end: the same MAC over a scope and a position string.)

A cursor says where the previous page ended: (created_at, payment_id). A client that could
write its own could name any instant, and some overflow on the way to Postgres (year 9999 with a
negative UTC offset is past datetime.max once converted): a 500 per request. So the position is
kept as integer microseconds since the epoch, bounded, and MACed (HMAC-SHA256, truncated to
128 bits) together with the caller's user id, under a key derived from the server's secret.
Anything else is a 400 naming `starting_after`.
"""
from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import hmac
import re
import secrets
import uuid

from paycell.errors import InvalidRequest

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_US_MAX = (datetime.datetime(9000, 1, 1, tzinfo=datetime.timezone.utc) - _EPOCH) // datetime.timedelta(microseconds=1)
_MAC_BYTES = 16
_KEY_LABEL = b"paycell.list-cursor.v1"


def cursor_key(secret: str) -> bytes:
    """The MAC key: derived from the server's secret, so a token's key is never used as is. With
    no secret (tokens verified by JWKS only) a random key of this process: cursors then hold only
    within one web process, and another answers 400 (the list is scoped to the caller whatever
    the cursor says, so this costs a client a restart of its paging, never data)."""
    if not secret:
        return secrets.token_bytes(32)
    return hmac.new(secret.encode(), _KEY_LABEL, hashlib.sha256).digest()


def _mac(key: bytes, caller: str, payload: bytes) -> bytes:
    return hmac.new(key, caller.encode() + b"\x00" + payload, hashlib.sha256).digest()[:_MAC_BYTES]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_cursor(key: bytes, caller: str, created_at: datetime.datetime, payment_id: str) -> str:
    """An opaque cursor for `caller`: where the previous page ended, in the list's own order."""
    us = (created_at - _EPOCH) // datetime.timedelta(microseconds=1)
    payload = f"{us} {payment_id}".encode()
    return f"{_b64(payload)}.{_b64(_mac(key, caller, payload))}"


def decode_cursor(key: bytes, caller: str, cursor: str) -> tuple[datetime.datetime, str]:
    """(created_at, payment_id) of a cursor this API gave `caller`; InvalidRequest otherwise."""
    try:
        payload_text, _, mac_text = cursor.partition(".")
        payload, mac = _unb64(payload_text), _unb64(mac_text)
        if not hmac.compare_digest(mac, _mac(key, caller, payload)):
            raise ValueError("bad MAC")
        us_text, payment_id = payload.decode().split(" ")
        us = int(us_text)
        if not us_text.isdigit() or not 0 <= us <= _US_MAX:
            raise ValueError("out of range")
        return _EPOCH + datetime.timedelta(microseconds=us), str(uuid.UUID(payment_id))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidRequest("starting_after is not a cursor this API returned", field="starting_after") from None


_POSITION = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


def encode_position(key: bytes, caller: str, scope: str, position: str) -> str:
    """An opaque cursor for `caller` saying where a page of list `scope` ended (`position`: an id,
    a version, a name; at most 100 of [A-Za-z0-9_.:-])."""
    if not _POSITION.fullmatch(position) or not _POSITION.fullmatch(scope):
        raise ValueError(f"not a cursor position: {scope!r} {position!r}")
    payload = f"{scope} {position}".encode()
    return f"{_b64(payload)}.{_b64(_mac(key, caller, payload))}"


def decode_position(key: bytes, caller: str, scope: str, cursor: str) -> str:
    """The position of a cursor this API gave `caller` for list `scope`; InvalidRequest otherwise."""
    try:
        payload_text, _, mac_text = cursor.partition(".")
        payload, mac = _unb64(payload_text), _unb64(mac_text)
        if not hmac.compare_digest(mac, _mac(key, caller, payload)):
            raise ValueError("bad MAC")
        found_scope, position = payload.decode().split(" ")
        if found_scope != scope or not _POSITION.fullmatch(position):
            raise ValueError("another list's cursor")
        return position
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidRequest("starting_after is not a cursor this API returned", field="starting_after") from None


LIST_LIMIT_DEFAULT = 20
LIST_LIMIT_MAX = 100


def check_query_names(query, allowed: tuple[str, ...]) -> None:
    """A list route's query string names only `allowed` parameters, each at most once."""
    for name in query:
        if name not in allowed:
            raise InvalidRequest(f"unknown query parameter {name[:40]!r}; expected {', '.join(allowed)}",
                                 field=name[:40])
        if len(query.getall(name)) > 1:
            raise InvalidRequest(f"{name} given more than once", field=name)


def limit_of(query) -> int:
    """A list route's `limit`: 1 to LIST_LIMIT_MAX, LIST_LIMIT_DEFAULT when absent."""
    limit_text = query.get("limit", str(LIST_LIMIT_DEFAULT))
    if not re.fullmatch(r"[0-9]{1,3}", limit_text) or not 1 <= int(limit_text) <= LIST_LIMIT_MAX:
        raise InvalidRequest(f"limit must be an integer from 1 to {LIST_LIMIT_MAX}", field="limit")
    return int(limit_text)
