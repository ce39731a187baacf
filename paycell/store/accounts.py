"""Ledger accounts: find-or-create by (code, currency), with ids cached per process.

Account identities never change (a trigger guards them), so an id once seen can be cached for
the life of the process. Hot system accounts (PSP clearing, suspense, fees) are split over
`slices` rows, slice s owned by the key `system:<s>` (migration 0027: every account carries a
user_id, its owner's or its slice's, and is found by (user_id, account_id)); post_order picks the
slice of the posting's user (hashtext(user) mod slices), so a user's postings always touch the
same slice and concurrent users spread over all of them. `system_account` here picks a slice by
any key the caller gives (the slice at index s is owned by `system:<s>`).

The payment steps no longer need it: post_order resolves accounts inside Postgres. It serves
tools that read balances by account id (tests, benchmarks). Accounts are opened through the
SECURITY DEFINER function ledger_account_ids (the app role cannot insert them), possibly inside
the caller's transaction, which may still roll back: an id is cached only when it was read in
autocommit, i.e. it is committed. `forget()` drops the cache.

The cache is an LRU of at most `entries_max` (code, currency) entries
(PAYCELL_ACCOUNT_CACHE_ENTRIES_MAX): a process that has seen ten million users keeps only the
most recent ones; an evicted account is simply read again (its id never changes).
"""
from __future__ import annotations

import zlib

import asyncpg
from cachetools import LRUCache

USER_KINDS = ("user_wallet", "payout_hold")
SYSTEM_KINDS = ("psp_clearing", "fees", "suspense", "equity")
ENTRIES_MAX_DEFAULT = 100_000  # Settings.account_cache_entries_max's default


class _CountingLRU(LRUCache):
    """cachetools' LRU that counts what it evicts (cachetools evicts through popitem)."""

    def __init__(self, maxsize: int):
        super().__init__(maxsize=maxsize)
        self.evictions = 0

    def popitem(self):
        item = super().popitem()
        self.evictions += 1
        return item


def wallet_code(user_id: str) -> str:
    return f"wallet:{user_id}"


def payout_hold_code(user_id: str) -> str:
    return f"payout_hold:{user_id}"


class AccountBook:
    """Resolves account codes to ids; one per process (or per pool)."""

    def __init__(self, system_slices: int, entries_max: int = ENTRIES_MAX_DEFAULT):
        if system_slices <= 0:
            raise ValueError("system_slices must be positive")
        if entries_max <= 0:
            raise ValueError("entries_max must be positive")
        self.system_slices = system_slices
        self._ids: _CountingLRU = _CountingLRU(entries_max)

    @classmethod
    def from_settings(cls, settings) -> AccountBook:
        return cls(settings.system_account_slices, settings.account_cache_entries_max)

    @property
    def cached(self) -> int:
        """Entries held now (at most `entries_max`)."""
        return len(self._ids)

    @property
    def evictions(self) -> int:
        """Entries dropped to stay within `entries_max` since the book was made."""
        return self._ids.evictions

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
        # The app role cannot insert accounts: ledger_account_ids (migration 0008) opens them at
        # zero. Whether it inserted is not visible here, so an id is cached only when read
        # outside a transaction (then it is committed); inside one it may still roll back.
        name = owner_id if kind in USER_KINDS else code.partition(":")[2]
        ids = tuple(await conn.fetchval("SELECT ledger_account_ids($1, $2, $3, $4)", kind, name, currency, slices))
        if not conn.is_in_transaction() and len(ids) >= slices:
            self._ids[(code, currency)] = ids
        return ids
