"""A store that cannot be reached is a 503 the client may retry, never a 500."""
from __future__ import annotations

from paycell.http.errors import UNAVAILABLE, status_for
from paycell.http.state import POOL
from tests.api.support import PAYMENTS, WALLET, call, error_of, payin
from tests.helpers import auth_header, new_user


async def test_a_closed_database_pool_answers_503_with_retry_after(api, settings):
    user = new_user()
    await api.app[POOL].close()  # as when the database goes away under a running web process
    for method, path, body in (("POST", PAYMENTS, payin(user)), ("GET", WALLET, None)):
        reply = await call(api, method, path, headers=auth_header(settings, user), json=body)
        assert error_of(reply) == (503, "service_unavailable")
        assert reply.headers["Retry-After"] == "1"


def test_store_failures_map_to_503_and_bugs_to_500():
    assert status_for(ConnectionRefusedError()) == 503
    assert all(status_for(cls.__new__(cls)) == 503 for cls in UNAVAILABLE)
    assert status_for(KeyError("bug")) == 500
