"""Every inconsistency reconciliation knows, what it means and what is done about it.

A kind is `auto` when its fix is safe without a human: the fix is decided from the data alone,
cannot move money twice (it posts under the same idempotency key as the step it stands in for),
and leaves the ledger check clean. Every other kind is queued for a human exactly once (a review
item unique per subject), with its evidence. A kind found that is not in this catalogue is a bug
in the finder: `kind_of` refuses it, so nothing unexpected is ever filed silently; the settlement
classifier files lines it cannot understand as `unexpected_line`, which is queued.

Each fix is a new compensating ledger transaction (never an edit of one) plus an event in the
payment's log, or, when no money is involved, the event alone.
"""
from __future__ import annotations

import msgspec


class Kind(msgspec.Struct, frozen=True):
    name: str
    source: str  # internal | settlement
    auto: bool
    meaning: str
    fix: str


KINDS: tuple[Kind, ...] = (
    # -- internal (hourly): orders vs ledger vs wallets vs the PSPs' status calls -------------
    Kind("psp_succeeded_not_posted", "internal", True,
         "the PSP says a charge succeeded; paycell's order is still live past its lease or needs attention "
         "after a timeout (we never heard the answer)",
         "complete the order and post its settlement (post_order `settle`, the same key the charge step uses)"),
    Kind("psp_failed_still_pending", "internal", True,
         "the PSP says a charge was declined or that it holds none; paycell's order is live past its lease "
         "or needs attention after a timeout",
         "fail the order with the PSP's code and release a pay-out's reserve (post_order `release`)"),
    Kind("psp_succeeded_order_failed", "internal", False,
         "the PSP says a charge succeeded that paycell recorded as failed",
         "queued: a human refunds the customer or re-credits the wallet"),
    Kind("posted_not_marked", "internal", True,
         "the settlement is posted but the order is not completed or its ledger/wallet flags are unset",
         "move the order to completed and set its flags (event `order.reconciled`; no posting: the money moved)"),
    Kind("marked_not_posted", "internal", False,
         "the order is completed but no settlement (or transfer) is posted",
         "queued: the ledger lacks money the order says moved"),
    Kind("live_past_deadline", "internal", False,
         "a live order is past its deadline and the PSP does not settle it either way (the sweeper did not "
         "move it, or the PSP still says pending)",
         "queued"),
    Kind("balance_differs_from_entries", "internal", False,
         "an account's stored balance or entry count differs from the sum of its entries",
         "queued: never fixed automatically (the ledger's own invariant is broken)"),
    Kind("reserve_without_live_payout", "internal", True,
         "a failed pay-out still holds its reserve (neither settled nor released)",
         "release the reserve to the wallet (post_recon_release, key `<order>:release`)"),
    Kind("reserve_of_completed_payout", "internal", False,
         "a completed pay-out's reserve was never settled",
         "queued"),
    Kind("webhook_not_applied", "internal", True,
         "a provider event was received but is still unapplied past the grace period, with attempts left",
         "send it to `apply_event` again (the sweeper's re-drive)"),
    Kind("webhook_unapplicable", "internal", False,
         "a provider event stayed unapplied after every attempt (no order carries it, or it contradicts one)",
         "queued"),
    # -- settlement (nightly): each provider's report line by line ---------------------------
    Kind("missing_ours", "settlement", False,
         "the provider reports a payment paycell has no order for", "queued"),
    Kind("missing_psp", "settlement", False,
         "a completed order of the connector in the report's period is on no report line of that connector",
         "queued"),
    Kind("amount_mismatch", "settlement", False,
         "the line's amount differs from the order's beyond the rule's allowable drift", "queued"),
    Kind("currency_mismatch", "settlement", False, "the line's currency is not the order's", "queued"),
    Kind("status_settled_order_live", "settlement", True,
         "the provider settled a payment whose order is still live or needs attention after a timeout",
         "complete the order and post its settlement (as psp_succeeded_not_posted)"),
    Kind("status_settled_order_failed", "settlement", False,
         "the provider settled a payment paycell recorded as failed", "queued"),
    Kind("status_returned_order_completed", "settlement", True,
         "the provider took back (chargeback, dispute, reversal) a payment paycell still shows completed",
         "post the return (post_order `return`) and move the order to returned (needs_attention when the "
         "wallet could not cover it)"),
    Kind("duplicate", "settlement", False,
         "a second line for a payment already on a line of the same category (this file or an earlier one)",
         "queued"),
    Kind("unexpected_line", "settlement", False,
         "a line naming one of our orders in a category paycell never books for it (a refund paycell did not "
         "ask for, a reversal of a chargeback ...)",
         "queued"),
)

BY_NAME = {k.name: k for k in KINDS}
AUTO = frozenset(k.name for k in KINDS if k.auto)
SETTLEMENT_OUTCOMES = ("matched", "not_a_payment") + tuple(k.name for k in KINDS if k.source == "settlement")


def kind_of(name: str) -> Kind:
    """The catalogue's entry; KeyError for a kind nobody catalogued (a bug, never filed)."""
    return BY_NAME[name]


def table() -> list[dict]:
    """The catalogue as rows (the API, the CLI and the README show it)."""
    return [msgspec.structs.asdict(k) for k in KINDS]
