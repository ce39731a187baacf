"""For the rule tests: a real in-memory VelocitySource over a list of past payments, and facts."""
from __future__ import annotations

import datetime

import msgspec

from paycell.rules.evaluate import PaymentFacts, VelocitySubject

NOW = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.UTC)


class PastPayment(msgspec.Struct, frozen=True, kw_only=True):
    kind: str
    user_id: str
    instrument: str | None
    amount_minor: int
    currency: str
    created_at: datetime.datetime


class PaymentHistory:
    """Answers count and sum over `payments` as of `now`: those created in (now - window, now]."""

    def __init__(self, payments: list[PastPayment], now: datetime.datetime):
        self.payments, self.now = payments, now

    def _in_window(self, subject: VelocitySubject, kind: str | None, window_s: int) -> list[PastPayment]:
        since = self.now - datetime.timedelta(seconds=window_s)
        key = "user_id" if subject.of == "user" else "instrument"
        return [p for p in self.payments
                if getattr(p, key) == subject.id and (kind is None or p.kind == kind) and since < p.created_at <= self.now]

    def count(self, subject: VelocitySubject, kind: str | None, window_s: int) -> int:
        return len(self._in_window(subject, kind, window_s))

    def sum_minor(self, subject: VelocitySubject, kind: str | None, currency: str, window_s: int) -> int:
        return sum(p.amount_minor for p in self._in_window(subject, kind, window_s) if p.currency == currency)


EMPTY = PaymentHistory([], NOW)


def facts(**overrides) -> PaymentFacts:
    """A card pay-in of 100.00 USD by u1 from France on an hour-old instrument, low score."""
    values = dict(trigger="payin", direction="payin", amount_minor=10_000, currency="USD", payment_option="card",
                  user_id="u1", connector="stripe", instrument="tok_1", instrument_country="FR",
                  instrument_age_s=3_600, ip="203.0.113.7", country="FR", model_score=0.1)
    return PaymentFacts(**(values | overrides))
