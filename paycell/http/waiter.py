"""Clients that asked to wait (`Prefer: wait=N`) sleep here until their payment is done.

One dedicated connection LISTENs on the channel the pipeline NOTIFYs when a payment that a
client waits on reaches a terminal state (payload "<user_id> <payment_id>"). A client registers
its key before the payment exists, so no notification can slip past it. When the connection
drops, notifications sent meanwhile are lost: after reconnecting every waiter is woken to
re-check the database. When the web process stops, `release_all` answers every waiting client at
once (with the payment as it stands), so that a shutdown never waits out a client's wait.
"""
from __future__ import annotations

import asyncio

import asyncpg
import structlog

log = structlog.get_logger("paycell.http.waiter")

Key = tuple[str, str]  # (user_id, payment_id)

WAITERS_MAX = 10_000  # the default of Settings.prefer_waiters_max (PAYCELL_PREFER_WAITERS_MAX)
RECONNECT_BACKOFF_S_MIN = 0.1
RECONNECT_BACKOFF_S_MAX = 5.0


class _Slot:
    __slots__ = ("event", "refs")

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.refs = 0


class Waiter:
    def __init__(self, database_url: str, channel: str, *, waiters_max: int = WAITERS_MAX,
                 waiters_per_user_max: int = WAITERS_MAX) -> None:
        self._url = database_url
        self._channel = channel
        self._waiters_max = waiters_max
        self._waiters_per_user_max = waiters_per_user_max
        self._slots: dict[Key, _Slot] = {}
        self._per_user: dict[str, int] = {}  # user -> registrations held: one user cannot fill the waiter
        self._conn: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self._supervisor: asyncio.Task | None = None
        self._closing = False
        self._released = False
        self.reconnects = 0

    @property
    def backend_pid(self) -> int | None:
        """The Postgres backend of the listening connection (operators and tests terminate it)."""
        return self._conn.get_server_pid() if self._conn is not None else None

    async def start(self) -> None:
        """Connect and LISTEN (failing loudly if the database is down at start-up)."""
        await self._connect()
        self._supervisor = asyncio.create_task(self._reconnect_when_lost(), name="paycell-waiter")

    async def close(self) -> None:
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        if self._conn is not None:
            await self._conn.close()

    def register(self, key: Key) -> bool:
        """Start listening for `key`; False when the waiter is full, or the user already holds
        `waiters_per_user_max` registrations (the caller must not wait)."""
        user = key[0]
        if self._per_user.get(user, 0) >= self._waiters_per_user_max:
            return False
        slot = self._slots.get(key)
        if slot is None:
            if len(self._slots) >= self._waiters_max:
                return False
            slot = self._slots[key] = _Slot()
        slot.refs += 1
        self._per_user[user] = self._per_user.get(user, 0) + 1
        return True

    def unregister(self, key: Key) -> None:
        slot = self._slots[key]
        slot.refs -= 1
        if slot.refs == 0:
            del self._slots[key]
        held = self._per_user[key[0]] - 1
        if held:
            self._per_user[key[0]] = held
        else:
            del self._per_user[key[0]]

    def release_all(self) -> None:
        """Stop every wait, now and from now on (the process is stopping): waiters return False."""
        self._released = True
        self._wake_all()

    async def wait(self, key: Key, timeout_s: float) -> bool:
        """True when woken (the payment is done, or the database must be re-checked), False on
        timeout or once released."""
        if self._released:
            return False
        event = self._slots[key].event
        try:
            async with asyncio.timeout(timeout_s):
                await event.wait()
        except TimeoutError:
            return False
        event.clear()
        return not self._released

    async def _connect(self) -> None:
        conn = await asyncpg.connect(self._url, statement_cache_size=0,  # it only LISTENs
                                     server_settings={"application_name": "paycell-waiter"})
        try:
            await conn.add_listener(self._channel, self._on_notify)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        self._lost.clear()
        conn.add_termination_listener(self._on_terminated)
        if conn.is_closed():  # lost before the termination listener was in place
            self._lost.set()

    def _on_notify(self, conn, pid, channel, payload: str) -> None:
        user_id, _, payment_id = payload.partition(" ")
        slot = self._slots.get((user_id, payment_id))
        if slot is not None:
            slot.event.set()

    def _on_terminated(self, conn) -> None:
        if not self._closing:
            log.warning("waiter.connection_lost")
            self._lost.set()

    async def _reconnect_when_lost(self) -> None:
        while True:
            await self._lost.wait()
            backoff_s = RECONNECT_BACKOFF_S_MIN
            while True:
                try:
                    await self._connect()
                    break
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                    log.warning("waiter.reconnect_failed", error=str(exc), retry_in_s=backoff_s)
                    await asyncio.sleep(backoff_s)
                    backoff_s = min(backoff_s * 2, RECONNECT_BACKOFF_S_MAX)
            self.reconnects += 1
            log.info("waiter.reconnected", waiters=len(self._slots))
            self._wake_all()

    def _wake_all(self) -> None:
        for slot in self._slots.values():
            slot.event.set()
