"""What the risk step's daily limit reads: a user's accepted payments in a window, per currency."""
from __future__ import annotations

import asyncpg

from paycell.store import payments
from paycell.workflow import Order

# The sum of the order's user's payments in its currency accepted in the last $2 seconds that have
# not failed (in flight, succeeded or needing attention all count), in minor units: one range scan
# of the index payment_request (user_id, created_at DESC, payment_id DESC).
_ACCEPTED_MINOR = """SELECT coalesce(sum(r.amount_minor), 0)::bigint FROM payment_request r
                      WHERE r.user_id = o.user_id AND r.created_at > now() - make_interval(secs => $2)
                        AND r.currency = o.currency AND r.status <> 'failed'"""


async def lock_order_with_accepted_minor(conn: asyncpg.Connection, user_id: str, order_id: str, *,
                                         window_s: int) -> tuple[Order | None, int | None]:
    """The order locked FOR UPDATE (None when missing) and its user's accepted payments in its
    currency of the last `window_s`, this order's own included, read in the statement that takes
    the lock: the risk step pays no round trip of its own for the daily limit. The sum is read in
    that statement's snapshot, taken after this order's request committed, which is all the daily
    limit's argument needs (rules/guardrail.py)."""
    return await payments.lock_order_with(conn, user_id, order_id, _ACCEPTED_MINOR, float(window_s))


# The route's connectors (and their old names) on which the order's user has its instrument
# attached with the order's payment option: one probe of instrument_attached per connector; NULL
# without connectors to check ($3 NULL: a route of one connector, checked at the gate).
_ATTACHED_ON = """CASE WHEN $3::text[] IS NOT NULL THEN
                  (SELECT array_agg(i.connector) FROM instrument i
                    WHERE i.user_id = o.user_id AND i.connector = ANY($3::text[]) AND i.detached_at IS NULL
                      AND i.provider_token = CASE o.kind WHEN 'payin' THEN o.from_acct ELSE o.to_acct END
                      AND i.payment_option = o.payment_option) END"""
EXTRA_FIRST_PARAM = 4  # the first parameter number free for `extra` expressions


async def lock_order_for_screen(conn: asyncpg.Connection, user_id: str, order_id: str, *, window_s: int,
                                connectors: list[str] | None, extra: tuple[str, ...] = (), extra_args: tuple = (),
                                ) -> tuple[Order | None, int | None, list[str] | None, tuple]:
    """lock_order_with_accepted_minor, which of `connectors` (when given) hold the order's
    instrument attached, and the values of the `extra` expressions (their parameters numbered from
    EXTRA_FIRST_PARAM: the risk engine's), all in the statement that takes the lock (no round trip more)."""
    order, extras = await payments.lock_order_with_all(conn, user_id, order_id, (_ACCEPTED_MINOR, _ATTACHED_ON, *extra),
                                                       float(window_s), connectors, *extra_args)
    if order is None:
        return None, None, None, ()
    return order, extras[0], extras[1], extras[2:]


async def lock_order_with_attached(conn: asyncpg.Connection, user_id: str, order_id: str, *,
                                   connectors: list[str] | None) -> tuple[Order | None, list[str] | None]:
    """The order locked FOR UPDATE and which of `connectors` hold its instrument attached (as
    lock_order_for_screen reads it): what routing an approved order needs (paycell/actors/proceed.py)."""
    return await payments.lock_order_with(conn, user_id, order_id, _ATTACHED_ON.replace("$3", "$2"), connectors)
