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


class InsufficientFunds(PaycellError):
    code, http_status = "insufficient_funds", 422


class LedgerError(PaycellError):
    """A posting the ledger refuses (unbalanced, unknown account, wrong currency)."""
    code, http_status = "ledger_rejected", 500


class LedgerKeyReused(LedgerError):
    """The same idempotency key was posted before with different entries."""
    code = "ledger_key_reused"


class IdentityProviderUnavailable(ConnectionError):
    """The identity provider's keys (PAYCELL_JWKS_URL) cannot be fetched. An OSError on purpose:
    the API answers it like any dependency it cannot reach, 503 service_unavailable with
    Retry-After, because the caller's token may well be good."""
