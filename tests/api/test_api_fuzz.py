"""No input makes a 500: a few hundred mutated bodies (deterministic, seeded) through the real
HTTP stack. Each gets a 2xx or a 4xx in the one error shape, and a 4xx writes nothing."""
from __future__ import annotations

import json
import random
import uuid

from tests.api.support import PAYMENTS, Reply, error_of
from tests.helpers import auth_header, new_user

_FIELDS = ("payment_id", "user_id", "from_acct", "to_acct", "amount", "currency", "payment_option")
_WEIRD = [None, True, False, 0, -1, 1.5, 2**70, "", " ", "\u0000", "\ud7ff\ue000", "𝟙𝟚", "١٢.٣٠", "12.30",
          "1e9", "NaN", "-0.01", "0.001", "9" * 400, "wallet:", "wallet:x" * 50, "tok_card_ok", "tok_card_",
          "tok_card_ok\n", "wallet:../../etc", "<script>", "'; DROP TABLE account; --", [], {}, [1, 2],
          {"a": {"b": [None]}}, "USD", "usd", "JPY", "card", "wallet", "bank_account"]


def _mutate(rng: random.Random, user: str) -> bytes:
    body = {"payment_id": str(uuid.uuid4()), "user_id": user, "from_acct": "tok_card_ok",
            "to_acct": f"wallet:{user}", "amount": "12.30", "currency": "USD", "payment_option": "card"}
    for _ in range(rng.randint(1, 3)):
        action = rng.choice(("replace", "drop", "add", "retype"))
        name = rng.choice(_FIELDS)
        if action == "replace":
            body[name] = rng.choice(_WEIRD)
        elif action == "drop":
            body.pop(name, None)
        elif action == "add":
            body[rng.choice(("extra", "amount_minor", "__proto__", "Amount"))] = rng.choice(_WEIRD)
        else:
            body[name] = [body.get(name)] if rng.random() < 0.5 else {"v": body.get(name)}
    if rng.random() < 0.1:
        return json.dumps(rng.choice([[body], "text", 12, None])).encode()
    raw = json.dumps(body).encode()
    if rng.random() < 0.05:
        raw = raw[: rng.randint(0, len(raw))]  # truncated JSON
    elif rng.random() < 0.03:
        raw = raw.replace(b"12.30", b"\xff\xfe")  # not UTF-8
    return raw


async def test_no_mutated_body_makes_a_server_error_or_a_partial_write(api, settings, pool):
    rng = random.Random(20261125)
    user = new_user("fuzz")
    headers = {**auth_header(settings, user), "Content-Type": "application/json"}
    statuses = {}
    for _ in range(300):
        raw = _mutate(rng, user)
        async with api.post(PAYMENTS, data=raw, headers=headers) as resp:
            assert resp.status < 500, (resp.status, raw, await resp.text())
            statuses[resp.status] = statuses.get(resp.status, 0) + 1
            if resp.status >= 400:
                reply = Reply(resp.status, resp.headers, await resp.json())
                error_of(reply)
    accepted = statuses.get(202, 0)
    assert sum(v for k, v in statuses.items() if k >= 400) > 200  # the mutations mostly hit validation
    assert await pool.fetchval("SELECT count(*) FROM payment_request WHERE user_id = $1", user) == accepted
    assert await pool.fetchval("SELECT count(*) FROM payment_order WHERE user_id = $1", user) == accepted
