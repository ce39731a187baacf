"""Typed errors, one per failure kind. Each carries a stable `code` and its HTTP status; the
API maps them to `{"error": {"code", "message", "field"}}` in one place (paycell.http.errors)."""
from __future__ import annotations


class PaycellError(Exception):
    code = "internal_error"
    http_status = 500

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidRequest(PaycellError):
    code, http_status = "invalid_request", 400


class Unauthenticated(PaycellError):
    code, http_status = "unauthenticated", 401


class Forbidden(PaycellError):
    code, http_status = "forbidden", 403


class NotFound(PaycellError):
    code, http_status = "not_found", 404


class CsrfRejected(PaycellError):
    """A console form posted without its session's CSRF token, or with another one: nothing is done."""
    code, http_status = "csrf_rejected", 403


class IdempotencyInProgress(PaycellError):
    code, http_status = "idempotency_key_in_use", 409


class IdempotencyConflict(PaycellError):
    code, http_status = "idempotency_key_reused", 422


class PayloadTooLarge(PaycellError):
    code, http_status = "payload_too_large", 413


class Unprocessable(PaycellError):
    """A well-formed request that paycell cannot accept (bad amount, currency, option...)."""
    code, http_status = "unprocessable", 422

    def __init__(self, message: str, *, code: str, field: str | None = None):
        super().__init__(message, field=field)
        self.code = code


class Conflict(PaycellError):
    """The request contradicts what exists (a list created again with another kind)."""
    code, http_status = "conflict", 409

    def __init__(self, message: str, *, code: str, field: str | None = None):
        super().__init__(message, field=field)
        self.code = code


class InsufficientFunds(PaycellError):
    code, http_status = "insufficient_funds", 422


class LedgerError(PaycellError):
    """A posting the ledger refuses (unbalanced, unknown account, wrong currency)."""
    code, http_status = "ledger_rejected", 500


class LedgerKeyReused(LedgerError):
    """The same idempotency key was posted before with different entries."""
    code = "ledger_key_reused"


# The edge (issue 6 items 9-11): answers to slow clients and to a web process at its limits.
class RequestTimeout(PaycellError):
    """The client did not send its request body within the deadline."""
    code, http_status = "request_timeout", 408


class Overloaded(PaycellError):
    """The web process is at its cap of concurrent requests; the client may retry shortly."""
    code, http_status = "overloaded", 503
    retry_after_s = 1


class PipelineBehind(PaycellError):
    """The payment pipeline is behind (its backlog passed a bound: paycell/admission): new payments
    are refused before anything is written, reads keep working."""
    code, http_status = "pipeline_behind", 503

    def __init__(self, message: str, *, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NotReady(PaycellError):
    """A store the web process needs does not answer: take the process out of rotation."""
    code, http_status = "not_ready", 503
    retry_after_s = 1


class RateLimited(PaycellError):
    """Too many payment requests for one user or one instrument within the window (issue 6 item 8).
    Carries the policy that refused, so the API can say when to retry (Retry-After, RateLimit)."""
    code, http_status = "rate_limited", 429

    def __init__(self, message: str, *, policy: str, quota: int, window_s: int, retry_after_s: int):
        super().__init__(message)
        self.policy, self.quota, self.window_s, self.retry_after_s = policy, quota, window_s, retry_after_s


class InstrumentBlocked(PaycellError):
    """The instrument collected too many declines within the window: refused until the window passes
    or an operator clears it (`paycell instrument unblock`)."""
    code, http_status = "instrument_blocked", 422


class IdempotencyKeyExpired(PaycellError):
    """The payment_id names an earlier payment whose idempotency key has expired (retention): the
    first answer can no longer be replayed, and a second payment under the same id is refused."""
    code, http_status = "idempotency_key_expired", 422


# -- accounts: who may receive money, and from or to which instruments (issue 6, items 3 and 4) --

class RecipientUnknown(PaycellError):
    """A transfer's payee is not a registered user with an open wallet: the money would be stranded."""
    code, http_status = "recipient_unknown", 422


class InstrumentNotAttached(Forbidden):
    """A pay-in or pay-out names an instrument the caller has not attached (or has detached)."""


class IdentityProviderUnavailable(ConnectionError):
    """The identity provider's keys (PAYCELL_JWKS_URL) cannot be fetched. An OSError on purpose:
    the API answers it like any dependency it cannot reach, 503 service_unavailable with
    Retry-After, because the caller's token may well be good."""


# The rule language (paycell/rules): a rule set with any problem is rejected whole.
class RuleProblem:
    """One problem of a rule set: where it is and what is wrong, in plain words."""
    __slots__ = ("line", "column", "message")

    def __init__(self, line: int, column: int, message: str):
        self.line, self.column, self.message = line, column, message

    def __repr__(self) -> str:
        return f"RuleProblem({self.line}, {self.column}, {self.message!r})"

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.message}"


def _one_of(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


class RiskListsFull(PaycellError):
    """Adding these values would take the risk lists past PAYCELL_RISK_LIST_ENTRIES_MAX live entries
    in all (every worker holds them all in memory); nothing was added."""
    code, http_status = "risk_lists_full", 422


class RuleSetInvalid(PaycellError):
    """A rule set that does not compile; `problems` holds every problem found, in file order."""
    code, http_status = "rules_invalid", 422

    def __init__(self, problems: list[RuleProblem]):
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


class RuleSyntaxError(RuleSetInvalid):
    """The rule set does not parse: `line`, `column` and `expected` (plain words) of the first
    place the parser could not go on from."""
    code = "rules_syntax"

    def __init__(self, line: int, column: int, expected: list[str], found: str):
        self.line, self.column, self.expected, self.found = line, column, expected, found
        super().__init__([RuleProblem(line, column, f"expected {_one_of(expected)}, found {found}")])


# The review queue (issue 8): operators resolve what the risk engine parked (paycell/reviews.py).
class ReviewClaimed(PaycellError):
    """Another operator holds the item's claim, and it has not lapsed (PAYCELL_REVIEW_CLAIM_S)."""
    code, http_status = "review_claimed", 409


class ReviewResolved(PaycellError):
    """The item was resolved already (approved, declined or expired): a resolution is final."""
    code, http_status = "review_resolved", 409


class ReviewOwnSubject(Forbidden):
    """An operator may not claim or resolve an item about their own payment."""
    code = "review_own_payment"


class SettlementFileRejected(PaycellError):
    """A settlement file reconciliation cannot read (paycell/reconcile/formats.py): bad CSV, an
    unknown or missing column, a currency that is not ISO 4217 or not the line's, a truncated
    file, one over the size limit. Nothing of it is stored. `code` names the failure:
    settlement_file_malformed, settlement_file_columns, settlement_file_currency,
    settlement_file_truncated, settlement_file_too_large."""
    code, http_status = "settlement_file_malformed", 422

    def __init__(self, message: str, *, code: str = "settlement_file_malformed", line: int | None = None):
        super().__init__(f"line {line}: {message}" if line else message)
        self.code = code
        self.line = line


class UnknownConnector(PaycellError):
    """Reconciliation was asked about a connector that has no settlement report format."""
    code, http_status = "unknown_connector", 422


# -- reversals (issue 13) --

class AmountExceedsRemaining(PaycellError):
    """A reversal larger than what remains of the payment (its amount less the reversals that
    succeeded or are under way)."""
    code, http_status = "amount_exceeds_remaining", 422


class PaymentNotReversible(PaycellError):
    """The payment is not in a state that can be reversed (only a completed pay-in or pay-out can)."""
    code, http_status = "payment_not_reversible", 409


class CurrencyMismatch(PaycellError):
    """A reversal in another currency than its payment's."""
    code, http_status = "currency_mismatch", 422


class ReversalNotSupported(PaycellError):
    """What the payment's connector cannot do: reverse part of a pay-out (a recall is whole)."""
    code, http_status = "reversal_not_supported", 422
