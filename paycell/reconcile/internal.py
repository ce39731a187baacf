"""Hourly internal reconciliation: orders vs ledger vs wallets vs the PSPs' own word.

Checks (each a catalogued kind, paycell/reconcile/catalogue.py):
- orders whose outcome paycell does not know, asked of their PSP (`status`, the connector's own
  idempotent question): live orders past their lease by the grace period, and orders that need
  attention after a timeout -> psp_succeeded_not_posted, psp_failed_still_pending,
  live_past_deadline (the PSP still says pending after the deadline); recently failed orders whose
  failure was paycell's own timeout -> psp_succeeded_order_failed when the PSP charged after all.
  A PSP that does not answer (timeout, 5xx, ...) is asked nothing more in this run: the next
  hour asks again.
- the ledger vs the orders: posted_not_marked, marked_not_posted; requested orders past their deadline.
- the ledger vs itself: balance_differs_from_entries (stored balance or entry count vs the entries).
- pay-out reserves: reserve_without_live_payout (a failed pay-out still holding one),
  reserve_of_completed_payout.
- the webhook inbox: webhook_not_applied (re-driven while attempts remain), webhook_unapplicable.
Breaks an earlier run (of any kind) left unsettled an hour ago are settled here too.

Every break is opened once per (kind, subject) under the owner `recon:internal`; a second run over
the same state opens nothing new. Each check reads at most CHECK_ROWS_MAX rows per run that no break
names yet, so a backlog larger than that is worked through over successive runs.
"""
from __future__ import annotations

import structlog

from paycell.actors.charge import charge_for
from paycell.actors.context import Context
from paycell.psp import registry
from paycell.psp.base import PspError
from paycell.reconcile import fixes
from paycell.store import payments
from paycell.store import reconcile as store

log = structlog.get_logger("paycell.reconcile.internal")

OWNER = store.owner_of(None)
CHECK_ROWS_MAX = 1_000
GRACE_S = 900  # an order or event younger than this past its lease is left to the sweeper
FAILED_LOOKBACK_S = 2 * 86_400
LEFTOVER_AGE_S = 3_600  # a break still `found` this long after its run is settled by the next hourly run
TIMEOUT_FAILURES = ("deadline_exceeded", "retries_exhausted", "psp_pending_deadline", "action_expired")

_UNKNOWN_OUTCOME = """
SELECT user_id, payment_order_id::text, payment_order_status, failure_code, deadline_at < now() AS overdue
  FROM payment_order o
 WHERE psp IS NOT NULL AND kind IN ('payin', 'payout')
   AND ((payment_order_status IN ('psp_submitting', 'psp_pending', 'requires_action')
         AND lease_until < now() - make_interval(secs => $1))
        OR (payment_order_status = 'needs_attention' AND failure_code = ANY($2::text[]))
        OR (payment_order_status = 'failed' AND failure_code = ANY($2::text[])
            AND updated_at > now() - make_interval(secs => $3)))
   AND (SELECT count(*) FROM (SELECT 1 FROM recon_break b          -- queued: a human has it
                               WHERE b.owner_id = $5 AND b.subject_key = 'order:' || o.payment_order_id
                                 AND b.kind IN ('psp_succeeded_order_failed', 'live_past_deadline')
                                 AND b.disposition = 'queued' LIMIT 1) q) = 0
 ORDER BY updated_at LIMIT $4"""

_SQL_CHECKS: dict[str, str] = {
    "posted_not_marked": """
        SELECT 'order:' || o.payment_order_id AS subject, o.payment_order_id,
               jsonb_build_object('status', o.payment_order_status, 'ledger_updated', o.ledger_updated,
                                  'wallet_updated', o.wallet_updated, 'transaction_id', t.transaction_id,
                                  'user_id', o.user_id, 'failure_code', o.failure_code) AS evidence
          FROM ledger_transaction t JOIN payment_order o USING (user_id, payment_order_id)
         WHERE t.kind IN ('payin_settle', 'payout_settle', 'transfer_transfer')
           AND ((o.payment_order_status IN ('psp_submitting', 'psp_pending', 'requires_action', 'psp_succeeded')
                 AND o.lease_until < now() - make_interval(secs => $1))
                OR (o.payment_order_status = 'completed' AND NOT (o.ledger_updated AND o.wallet_updated)))""",
    "marked_not_posted": """
        SELECT 'order:' || o.payment_order_id AS subject, o.payment_order_id,
               jsonb_build_object('status', o.payment_order_status, 'kind', o.kind, 'amount_minor', o.amount_minor,
                                  'currency', o.currency, 'user_id', o.user_id, 'psp', o.psp)
          FROM payment_order o
         WHERE o.payment_order_status IN ('completed', 'returned')
           AND NOT EXISTS (SELECT 1 FROM ledger_transaction t
                            WHERE t.user_id = o.user_id AND t.idempotency_key = o.payment_order_id::text
                                  || CASE o.kind WHEN 'transfer' THEN ':transfer' ELSE ':settle' END)
           AND o.updated_at < now() - make_interval(secs => $1)""",
    "live_past_deadline": """
        SELECT 'order:' || o.payment_order_id AS subject, o.payment_order_id,
               jsonb_build_object('status', o.payment_order_status, 'deadline_at', o.deadline_at, 'user_id', o.user_id)
          FROM payment_order o
         WHERE o.payment_order_status = 'requested' AND o.deadline_at < now() - make_interval(secs => $1)""",
    "balance_differs_from_entries": """
        SELECT 'account:' || a.account_id AS subject, NULL::uuid,
               jsonb_build_object('account_id', a.account_id, 'code', a.code, 'currency', a.currency,
                                  'balance_minor', a.balance_minor, 'entries_sum_minor', coalesce(s.total, 0),
                                  'entry_count', a.entry_count, 'entries', coalesce(s.n, 0))
          FROM account a
          LEFT JOIN (SELECT user_id, account_id, sum(amount_minor) AS total, count(*) AS n
                       FROM ledger_entry GROUP BY user_id, account_id) s USING (user_id, account_id)
         WHERE (a.balance_minor <> coalesce(s.total, 0) OR a.entry_count <> coalesce(s.n, 0))
           AND $1::float8 IS NOT NULL""",
    "reserve_without_live_payout": """
        SELECT 'order:' || o.payment_order_id AS subject, o.payment_order_id,
               jsonb_build_object('status', o.payment_order_status, 'amount_minor', o.amount_minor,
                                  'currency', o.currency, 'user_id', o.user_id, 'reserve_transaction_id', r.transaction_id)
          FROM ledger_transaction r JOIN payment_order o USING (user_id, payment_order_id)
         WHERE r.kind = 'payout_reserve' AND o.payment_order_status = 'failed'
           AND NOT EXISTS (SELECT 1 FROM ledger_transaction x
                            WHERE x.user_id = o.user_id
                              AND x.idempotency_key IN (o.payment_order_id::text || ':settle',
                                                        o.payment_order_id::text || ':release'))
           AND o.updated_at < now() - make_interval(secs => $1)""",
    "reserve_of_completed_payout": """
        SELECT 'order:' || o.payment_order_id AS subject, o.payment_order_id,
               jsonb_build_object('status', o.payment_order_status, 'amount_minor', o.amount_minor,
                                  'currency', o.currency, 'user_id', o.user_id, 'reserve_transaction_id', r.transaction_id)
          FROM ledger_transaction r JOIN payment_order o USING (user_id, payment_order_id)
         WHERE r.kind = 'payout_reserve' AND o.payment_order_status IN ('completed', 'returned')
           AND NOT EXISTS (SELECT 1 FROM ledger_transaction x
                            WHERE x.user_id = o.user_id
                              AND x.idempotency_key = o.payment_order_id::text || ':settle')
         AND $1::float8 IS NOT NULL""",
}

# Each check's rows that no break of its kind names yet: a run reads CHECK_ROWS_MAX new ones, so
# the next run reaches the rows after them instead of finding the same ones again.
# (A LATERAL probe, not NOT EXISTS: on tables whose statistics lag, the planner turned the anti-join
# into a nested loop over every break of the kind; LIMIT 1 keeps it one index probe per row.)
_NEW = """SELECT c.* FROM ({check}) c
            LEFT JOIN LATERAL (SELECT true AS found FROM recon_break b
                                WHERE b.owner_id = $3 AND b.kind = $4 AND b.subject_key = c.subject LIMIT 1) x ON true
           WHERE x.found IS NULL
           LIMIT $2"""

_EVENTS = """
SELECT connector, event_id, type, result, note, apply_attempts, received_at, payment_order_id::text,
       psp_reference, apply_attempts >= $3 AS exhausted
  FROM psp_event e
 WHERE applied_at IS NULL AND received_at < now() - make_interval(secs => $1)
   AND (SELECT count(*) FROM (SELECT 1 FROM recon_break b
                               WHERE b.owner_id = $4 AND b.kind IN ('webhook_not_applied', 'webhook_unapplicable')
                                 AND b.subject_key = 'event:' || e.connector || ':' || e.event_id LIMIT 1) q) = 0
 ORDER BY received_at LIMIT $2"""


async def run_internal(ctx: Context, *, grace_s: float = GRACE_S, limit: int = CHECK_ROWS_MAX) -> store.Run:
    """One internal reconciliation: find, fix what is safe, queue the rest, keep the report."""
    async with ctx.pool.acquire() as conn:
        run_id = await store.start_run(conn, owner=OWNER, kind="internal", connector=None)
    await _ask_the_psps(ctx, run_id, grace_s=grace_s, limit=limit)
    async with ctx.pool.acquire() as conn:
        for kind, sql in _SQL_CHECKS.items():
            for subject, order_id, evidence in await conn.fetch(_NEW.format(check=sql), float(grace_s), limit,
                                                                  OWNER, kind):
                await store.insert_break(conn, owner=OWNER, kind=kind, subject_key=subject, run_id=run_id,
                                         order_id=order_id and str(order_id), evidence=evidence)
        for e in await conn.fetch(_EVENTS, float(grace_s), limit, ctx.settings.psp_event_apply_attempts_max, OWNER):
            evidence = {"connector": e["connector"], "event_id": e["event_id"], "type": e["type"],
                        "result": e["result"], "note": e["note"], "apply_attempts": e["apply_attempts"],
                        "received_at": e["received_at"].isoformat(), "psp_reference": e["psp_reference"]}
            kind = "webhook_unapplicable" if e["exhausted"] else "webhook_not_applied"
            await store.insert_break(conn, owner=OWNER, kind=kind, subject_key=f"event:{e['connector']}:{e['event_id']}",
                                     run_id=run_id, order_id=e["payment_order_id"], evidence=evidence)
    fixed, queued = await fixes.settle_run(ctx, OWNER, run_id)
    left_fixed, left_queued = await fixes.settle_leftovers(ctx, older_than_s=LEFTOVER_AGE_S)
    if left_fixed or left_queued:
        log.warning("reconcile.leftovers_settled", fixed=left_fixed, queued=left_queued)
    async with ctx.pool.acquire() as conn:
        await store.finish_run(conn, OWNER, run_id)
        run = await store.get_run(conn, OWNER, run_id)
    log.info("reconcile.internal_done", counts=run.counts, fixed=fixed, queued=queued)
    return run


async def _ask_the_psps(ctx: Context, run_id: str, *, grace_s: float, limit: int) -> None:
    async with ctx.pool.acquire() as conn:
        rows = await conn.fetch(_UNKNOWN_OUTCOME, float(grace_s), list(TIMEOUT_FAILURES), float(FAILED_LOOKBACK_S),
                                limit, OWNER)
        unreachable: set[str] = set()
        for row in rows:
            order = await payments.read_order(conn, row["user_id"], row["payment_order_id"])
            if order is None or order.psp is None or order.psp in unreachable:
                continue
            try:
                not_ready = registry.missing(order.psp, ctx.settings)
            except registry.UnknownPsp:
                not_ready = "no connector of that name is registered"
            if not_ready:  # a connector retired or not configured here: nobody to ask
                unreachable.add(order.psp)
                log.warning("reconcile.psp_not_configured", psp=order.psp, reason=not_ready)
                continue
            try:
                result = await ctx.psp(order.psp).status(charge_for(order))
            except PspError as exc:
                # One unanswered question per connector per run: the next hour asks again.
                unreachable.add(order.psp)
                log.warning("reconcile.psp_unreachable", order_id=order.payment_order_id, psp=order.psp,
                            error=str(exc))
                continue
            evidence = {"status": order.payment_order_status, "failure_code": row["failure_code"], "psp": order.psp,
                        "user_id": order.user_id, "amount_minor": order.amount_minor, "currency": order.currency,
                        "psp_status": result.status if result else None,
                        "psp_reference": (result.psp_reference if result else None) or order.psp_reference,
                        "decline_code": result.decline_code if result else None}
            kind = _kind(order.payment_order_status, result and result.status, overdue=row["overdue"])
            if kind is not None:
                await store.insert_break(conn, owner=OWNER, kind=kind, subject_key=f"order:{order.payment_order_id}",
                                         run_id=run_id, order_id=order.payment_order_id, evidence=evidence)


def _kind(state: str, psp_status: str | None, *, overdue: bool) -> str | None:
    if state == "failed":
        return "psp_succeeded_order_failed" if psp_status == "succeeded" else None
    if psp_status == "succeeded":
        return "psp_succeeded_not_posted"
    if psp_status in (None, "declined"):
        return "psp_failed_still_pending"
    return "live_past_deadline" if overdue and state != "needs_attention" else None


