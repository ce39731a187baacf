"""Ledger accounts: find-or-create by (code, currency), with ids cached per process.

Account identities never change (a trigger guards them), so an id once seen can be cached for
the life of the process. Hot system accounts (PSP clearing, suspense, fees) are split over
`slices` rows; a posting picks one slice from its own idempotency key, so retries of the same
posting land on the same row and concurrent postings spread over all of them.
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

    async def _ensure(self, conn, code, kind, owner_id, currency, slices) -> tuple[int, ...]:
        await conn.execute(
            """INSERT INTO account (code, kind, owner_id, currency, slice)
               SELECT $1, $2, $3, $4, s FROM generate_series(0, $5 - 1) AS s
               ON CONFLICT (code, currency, slice) DO NOTHING""",
            code, kind, owner_id, currency, slices)
        rows = await conn.fetch(
            "SELECT account_id FROM account WHERE code = $1 AND currency = $2 ORDER BY slice", code, currency)
        ids = tuple(r["account_id"] for r in rows)
        self._ids[(code, currency)] = ids
        return ids
