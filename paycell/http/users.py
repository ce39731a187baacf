"""Registering users on their first authenticated call: a transfer may only pay a user paycell
knows (and whose wallet is open), so every caller is recorded once.

The web process remembers the users it registered in a bounded LRU, so a known user costs no
database work per request; a new one (or one the LRU forgot) costs one idempotent INSERT.
"""
from __future__ import annotations

from aiohttp import web
from cachetools import LRUCache

from paycell.config import Settings
from paycell.http.state import CALLER, POOL
from paycell.store import users


def register_middleware(settings: Settings):
    known: LRUCache[str, bool] = LRUCache(maxsize=settings.known_users_cache_entries_max)

    @web.middleware
    async def middleware(request: web.Request, handler) -> web.StreamResponse:
        caller = request.get(CALLER)
        if caller is not None and caller not in known:
            await users.register(request.app[POOL], caller)
            known[caller] = True
        return await handler(request)
    return middleware
