"""Ledger accounts: find-or-create by (code, currency), with ids cached per process.

Account identities never change (a trigger guards them), so an id once seen can be cached for
the life of the process. Hot system accounts (PSP clearing, suspense, fees) are split over
`slices` rows; a posting picks one slice from its own idempotency key, so retries of the same
posting land on the same row and concurrent postings spread over all of them.

Accounts are created inside the caller's transaction, which may still roll back: an id is cached
only once it is known to be committed (the row was already there, created by someone else), never
when this call inserted it. `forget()` drops the cache when a posting names an unknown account.
"""
from __future__ import annotations

import zlib

import asyncpg

USER_KINDS = ("user_wallet", "payout_hold")
SYSTEM_KINDS = ("psp_clearing", "fees", "suspense", "equity")


def wallet_code(user_id: str) -> str:
    return f"wallet:{user_id}"


def payout_hold_code(user_id: str) -> str:
    return f"payout_hold:{user_id}"


class AccountBook:
    """Resolves account codes to ids; one per process (or per pool)."""

    def __init__(self, system_slices: int):
        if system_slices <= 0:
            raise ValueError("system_slices must be positive")
        self.system_slices = system_slices
        self._ids: dict[tuple[str, str], tuple[int, ...]] = {}

    async def user_account(self, conn: asyncpg.Connection, kind: str, user_id: str, currency: str) -> int:
        """The user's wallet or payout-hold account in `currency`, created on first use."""
        code = wallet_code(user_id) if kind == "user_wallet" else payout_hold_code(user_id)
        if kind not in USER_KINDS:
            raise ValueError(f"not a user account kind: {kind}")
        ids = self._ids.get((code, currency))
        if ids is None:
            ids = await self._ensure(conn, code, kind, user_id, currency, 1)
        return ids[0]

    async def system_account(self, conn: asyncpg.Connection, kind: str, name: str, currency: str, *,
                             key: str) -> int:
        """One slice of the system account `kind:name`, chosen by the posting's key."""
        if kind not in SYSTEM_KINDS:
            raise ValueError(f"not a system account kind: {kind}")
        code = f"{kind}:{name}" if name else kind
        ids = self._ids.get((code, currency))
        if ids is None:
            ids = await self._ensure(conn, code, kind, None, currency, self.system_slices)
        return ids[zlib.crc32(key.encode()) % len(ids)]

    def forget(self) -> None:
        self._ids.clear()

    async def _ensure(self, conn, code, kind, owner_id, currency, slices) -> tuple[int, ...]:
        # ON CONFLICT waits for a concurrent creator to commit or roll back, so when this inserts
        # nothing the rows it then reads are committed ones (or this transaction's own, below).
        inserted = await conn.fetchval(
            """WITH made AS (
                   INSERT INTO account (code, kind, owner_id, currency, slice)
                   SELECT $1, $2, $3, $4, s FROM generate_series(0, $5 - 1) AS s
                   ON CONFLICT (code, currency, slice) DO NOTHING RETURNING 1)
               SELECT count(*) FROM made""",
            code, kind, owner_id, currency, slices)
        rows = await conn.fetch(
            "SELECT account_id FROM account WHERE code = $1 AND currency = $2 ORDER BY slice", code, currency)
        ids = tuple(r["account_id"] for r in rows)
        if not inserted and len(ids) == slices:
            # Rows this same transaction inserted in an earlier call would also land here; the
            # steps resolve each account once per transaction, and `forget` covers the rest.
            self._ids[(code, currency)] = ids
        return ids
