"""The retention job as the processes run it: the worker's periodic actor and the operator's
`paycell idempotency expire`, against the test database."""
from __future__ import annotations

import os
import subprocess
import sys

import dramatiq

from paycell.actors.broker import STEP_QUEUES
from tests.helpers import new_user, wait_until

PAYCELL = os.path.join(os.path.dirname(sys.executable), "paycell")


async def _expired_key(pool, settings) -> str:
    """A user with one idempotency key past retention (no payment: the job looks at keys only)."""
    user = new_user()
    await pool.execute(
        """INSERT INTO idempotency_key (user_id, key, request_sha256, response_status, response_body, created_at)
           VALUES ($1, gen_random_uuid()::text, '\\x00', 202, '{}', now() - make_interval(secs => $2))""",
        user, float(settings.idempotency_key_retention_s + 60))
    return user


async def _keys_of(pool, user: str) -> int:
    return await pool.fetchval("SELECT count(*) FROM idempotency_key WHERE user_id = $1", user)


async def test_the_periodic_actor_deletes_expired_keys(worker, broker, settings, pool):
    user = await _expired_key(pool, settings)
    broker.enqueue(dramatiq.Message(queue_name=STEP_QUEUES["expire_idempotency_keys"],
                                    actor_name="expire_idempotency_keys", args=(), kwargs={}, options={}))

    async def gone() -> bool:
        return await _keys_of(pool, user) == 0

    assert await wait_until(gone, timeout_s=20)


async def test_the_expire_command_deletes_expired_keys_with_a_progress_line(settings, pool):
    user = await _expired_key(pool, settings)
    out = subprocess.run([PAYCELL, "idempotency", "expire"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("idempotency keys before ") and " batch 1 deleted " in lines[0], out.stdout
    assert lines[-1].startswith("expired ") and "idempotency keys in" in lines[-1], out.stdout
    assert await _keys_of(pool, user) == 0
