"""Which failures Dramatiq retries: transient ones only, and only while the budget lasts."""
from __future__ import annotations

import asyncpg
import pytest
import redis

from paycell.actors.broker import Transient, retry_when
from paycell.errors import InvalidRequest, LedgerError
from paycell.workflow import IllegalTransition


@pytest.mark.parametrize("exc", [Transient("PSP timed out"), ConnectionResetError(), TimeoutError(),
                                 asyncpg.ConnectionDoesNotExistError("gone"), asyncpg.DeadlockDetectedError("x"),
                                 redis.exceptions.ConnectionError(), LedgerError("unknown account")])
def test_transient_failures_are_retried_until_the_budget_is_spent(settings, exc):
    should_retry = retry_when(settings)
    assert should_retry(0, exc)
    assert should_retry(settings.retries_max - 1, exc)
    assert not should_retry(settings.retries_max, exc)


@pytest.mark.parametrize("exc", [KeyError("bug"), IllegalTransition("completed -> failed"),
                                 InvalidRequest("bad"), ValueError("bad")])
def test_other_failures_are_dead_lettered_at_once(settings, exc):
    assert not retry_when(settings)(0, exc)
