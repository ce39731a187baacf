"""The model's features: one module, computed the same way offline (training) and online (scoring).

`features(payment, history)` is the only place a feature is defined. It reads the payment and a
`History`: the user's and the instrument's past, strictly before the payment's created_at, so a
payment's features never depend on what came after it. Offline, `MemoryHistory` answers from a
time-ordered list of payments (the synthetic history); online, a Postgres-backed History answers
the same questions from the payments and instruments tables. Both agree as long as each honours the
Protocol's definitions below.

Windows are half-open, [created_at - window, created_at). Counts include declined attempts (card
testing is mostly declines); sums are of attempted amounts in the payment's own currency, in
integer minor units. An instrument's payments are the user's own payments naming it (a token
names one customer's card with a real provider; the simulators' test tokens are shared). What
looks into the user's past beyond the windows is bounded by the user's last `RECENT_MAX`
payments, so that scoring costs the same for a user of ten years: the usual amount (the lower
median of the most recent `USUAL_SAMPLE_MAX` succeeded ones in the payment's currency among
them), the countries and IPs seen, and whether the instrument was used before. The home country
is the user's first payment's, the last country its previous payment's. A country or IP that is
not known (None online: a request no proxy located) is never "seen".
"""
from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Protocol

import msgspec

from paycell.risk.synthetic import Payment

USUAL_SAMPLE_MAX = 50
RECENT_MAX = 200
MINUTES_10 = timedelta(minutes=10)
HOUR_1 = timedelta(hours=1)
HOURS_24 = timedelta(hours=24)
INSTRUMENT_NEW_AGE = timedelta(hours=24)
OPTIONS = ("card", "bank_account", "paypal", "wallet")
KINDS = ("payin", "payout", "transfer")


class PaymentFacts(Protocol):
    """What a feature reads from the payment being scored: a synthetic `Payment` offline, the
    order with its user's and instrument's records online. Never its label."""

    user_id: str
    kind: str
    amount_minor: int
    currency: str
    payment_option: str
    instrument: str | None
    counterparty_user_id: str | None
    ip: str | None
    country: str | None
    created_at: datetime
    account_created_at: datetime
    instrument_attached_at: datetime | None


class Window(msgspec.Struct, frozen=True):
    count: int
    sum_minor: int


class History(Protocol):
    """The past of a user and of an instrument, strictly before `before`."""

    def user_window(self, user_id: str, currency: str, before: datetime, window: timedelta) -> Window:
        """The user's payments created in [before - window, before): all of them counted, those in
        `currency` summed."""

    def instrument_window(self, user_id: str, instrument: str, currency: str, before: datetime,
                          window: timedelta) -> Window:
        """The same for the user's payments naming `instrument`."""

    def instrument_declines(self, user_id: str, instrument: str, before: datetime, window: timedelta) -> int:
        """The user's declined payments naming `instrument` created in [before - window, before)."""

    def user_declines(self, user_id: str, before: datetime, window: timedelta) -> int:
        """The user's declined payments created in [before - window, before)."""

    def transfers_received(self, user_id: str, before: datetime, window: timedelta) -> int:
        """Transfers to the user (as counterparty) created in [before - window, before), any outcome."""

    def usual_amount_minor(self, user_id: str, currency: str, before: datetime) -> int | None:
        """Median (lower) of the last USUAL_SAMPLE_MAX succeeded amounts in `currency` among the
        user's last RECENT_MAX payments before `before`, None without any."""

    def instrument_used_before(self, user_id: str, instrument: str, before: datetime) -> bool:
        """Whether one of the user's last RECENT_MAX payments before `before` named the instrument."""

    def countries(self, user_id: str, before: datetime) -> tuple[str | None, str | None, frozenset[str]]:
        """The country of the user's first payment (its home) and of its last one before `before`,
        and the known countries of its last RECENT_MAX payments."""

    def ip_seen(self, user_id: str, ip: str | None, before: datetime) -> bool:
        """Whether one of the user's last RECENT_MAX payments before `before` came from `ip`."""


class Features(msgspec.Struct, frozen=True, kw_only=True):
    """One payment's features; the unit or kind of each is the last part of its name.

    `_ratio` and `_log` are unitless; `_count` a number of payments; `_minor` integer minor units of
    the payment's currency; `_days`/`_h` ages; `_flag` 0 or 1 (one-hot groups are flags)."""

    amount_log: float                   # ln(1 + amount in minor units)
    amount_to_usual_ratio: float        # amount / the user's usual amount; 1.0 without a usual
    amount_to_usual_log: float          # ln of that ratio; 0.0 without a usual
    usual_known_flag: int               # the user has a succeeded payment in this currency
    user_10m_count: int
    user_10m_sum_minor: int
    user_1h_count: int
    user_1h_sum_minor: int
    user_24h_count: int
    user_24h_sum_minor: int
    instrument_10m_count: int           # 0 for a transfer (no instrument)
    instrument_10m_sum_minor: int
    instrument_24h_count: int
    instrument_24h_sum_minor: int
    instrument_1h_declines_count: int
    user_1h_declines_count: int
    user_received_24h_count: int        # transfers the user received (fan-in before a pay-out)
    counterparty_received_24h_count: int  # transfers the receiver of this transfer got; 0 otherwise
    account_age_days: float
    instrument_age_h: float             # since it was attached; 0.0 for a transfer
    instrument_new_flag: int            # attached less than 24 h ago or never used before
    option_card_flag: int
    option_bank_account_flag: int
    option_paypal_flag: int
    option_wallet_flag: int             # a transfer between wallets
    kind_payin_flag: int
    kind_payout_flag: int
    kind_transfer_flag: int
    hour_of_day_utc_h: int              # 0..23
    country_not_home_flag: int          # differs from the user's first country; 0 on a first payment
    country_not_last_flag: int          # differs from the user's previous payment's country
    country_unseen_flag: int            # never seen for this user; 0 on a first payment
    ip_unseen_flag: int                 # the user never paid from this IP before

    def row(self) -> tuple[float, ...]:
        """The values in NAMES order, for a model."""
        return tuple(float(v) for v in msgspec.structs.astuple(self))


NAMES: tuple[str, ...] = Features.__struct_fields__


def features(payment: PaymentFacts, history: History) -> Features:
    """The features of `payment` given what `history` knew strictly before its creation."""
    at, user, currency, instrument = payment.created_at, payment.user_id, payment.currency, payment.instrument
    usual = history.usual_amount_minor(user, currency, at)
    ratio = payment.amount_minor / usual if usual else 1.0
    user_10m, user_1h, user_24h = (history.user_window(user, currency, at, w) for w in (MINUTES_10, HOUR_1, HOURS_24))
    if instrument is None:
        instrument_10m = instrument_24h = Window(0, 0)
        declines, age_h, new = 0, 0.0, False
    else:
        instrument_10m = history.instrument_window(user, instrument, currency, at, MINUTES_10)
        instrument_24h = history.instrument_window(user, instrument, currency, at, HOURS_24)
        declines = history.instrument_declines(user, instrument, at, HOUR_1)
        attached = payment.instrument_attached_at or at
        age_h = max(0.0, (at - attached).total_seconds() / 3600)
        new = at - attached < INSTRUMENT_NEW_AGE or not history.instrument_used_before(user, instrument, at)
    home, last, seen = history.countries(user, at)
    return Features(
        amount_log=math.log1p(payment.amount_minor),
        amount_to_usual_ratio=ratio, amount_to_usual_log=math.log(ratio), usual_known_flag=int(usual is not None),
        user_10m_count=user_10m.count, user_10m_sum_minor=user_10m.sum_minor,
        user_1h_count=user_1h.count, user_1h_sum_minor=user_1h.sum_minor,
        user_24h_count=user_24h.count, user_24h_sum_minor=user_24h.sum_minor,
        instrument_10m_count=instrument_10m.count, instrument_10m_sum_minor=instrument_10m.sum_minor,
        instrument_24h_count=instrument_24h.count, instrument_24h_sum_minor=instrument_24h.sum_minor,
        instrument_1h_declines_count=declines,
        user_1h_declines_count=history.user_declines(user, at, HOUR_1),
        user_received_24h_count=history.transfers_received(user, at, HOURS_24),
        counterparty_received_24h_count=(
            history.transfers_received(payment.counterparty_user_id, at, HOURS_24)
            if payment.counterparty_user_id else 0),
        account_age_days=max(0.0, (at - payment.account_created_at).total_seconds() / 86_400),
        instrument_age_h=age_h, instrument_new_flag=int(new),
        option_card_flag=int(payment.payment_option == "card"),
        option_bank_account_flag=int(payment.payment_option == "bank_account"),
        option_paypal_flag=int(payment.payment_option == "paypal"),
        option_wallet_flag=int(payment.payment_option == "wallet"),
        kind_payin_flag=int(payment.kind == "payin"), kind_payout_flag=int(payment.kind == "payout"),
        kind_transfer_flag=int(payment.kind == "transfer"),
        hour_of_day_utc_h=at.hour,
        country_not_home_flag=int(home is not None and payment.country != home),
        country_not_last_flag=int(last is not None and payment.country != last),
        country_unseen_flag=int(bool(seen) and payment.country not in seen),
        ip_unseen_flag=int(not history.ip_seen(user, payment.ip, at)),
    )


class _Series:
    """One key's payments in created_at order, with running sums per currency for window sums."""

    def __init__(self) -> None:
        self.times: list[datetime] = []
        self.payments: list[Payment] = []
        self.declines: list[datetime] = []
        self.sums_minor: dict[str, list[int]] = defaultdict(lambda: [0])  # prefix sums, per currency
        self.sum_index: dict[str, list[datetime]] = defaultdict(list)

    def add(self, payment: Payment) -> None:
        if self.times and payment.created_at < self.times[-1]:
            raise ValueError(f"payments must be added in created_at order: {payment.payment_id}")
        self.times.append(payment.created_at)
        self.payments.append(payment)
        if payment.outcome == "declined":
            self.declines.append(payment.created_at)
        prefix = self.sums_minor[payment.currency]
        prefix.append(prefix[-1] + payment.amount_minor)
        self.sum_index[payment.currency].append(payment.created_at)

    def before(self, at: datetime) -> int:
        return bisect.bisect_left(self.times, at)

    def window(self, currency: str, at: datetime, window: timedelta) -> Window:
        count = bisect.bisect_left(self.times, at) - bisect.bisect_left(self.times, at - window)
        times = self.sum_index.get(currency, [])
        prefix = self.sums_minor.get(currency, [0])
        high, low = bisect.bisect_left(times, at), bisect.bisect_left(times, at - window)
        return Window(count, prefix[high] - prefix[low])

    def declines_in(self, at: datetime, window: timedelta) -> int:
        return bisect.bisect_left(self.declines, at) - bisect.bisect_left(self.declines, at - window)


class MemoryHistory:
    """A History over payments held in memory, added in created_at order (the offline side)."""

    def __init__(self, payments: Iterable[Payment] = ()) -> None:
        self._users: dict[str, _Series] = defaultdict(_Series)
        self._instruments: dict[tuple[str, str], _Series] = defaultdict(_Series)  # (user, instrument)
        self._received: dict[str, list[datetime]] = defaultdict(list)
        for payment in payments:
            self.add(payment)

    def add(self, payment: Payment) -> None:
        self._users[payment.user_id].add(payment)
        if payment.instrument is not None:
            self._instruments[payment.user_id, payment.instrument].add(payment)
        if payment.counterparty_user_id is not None:
            self._received[payment.counterparty_user_id].append(payment.created_at)

    def _user(self, user_id: str) -> _Series:
        return self._users.get(user_id) or _Series()

    def user_window(self, user_id: str, currency: str, before: datetime, window: timedelta) -> Window:
        return self._user(user_id).window(currency, before, window)

    def _recent(self, user_id: str, before: datetime) -> list[Payment]:
        series = self._user(user_id)
        end = series.before(before)
        return series.payments[max(0, end - RECENT_MAX):end]

    def instrument_window(self, user_id: str, instrument: str, currency: str, before: datetime,
                          window: timedelta) -> Window:
        return (self._instruments.get((user_id, instrument)) or _Series()).window(currency, before, window)

    def instrument_declines(self, user_id: str, instrument: str, before: datetime, window: timedelta) -> int:
        return (self._instruments.get((user_id, instrument)) or _Series()).declines_in(before, window)

    def user_declines(self, user_id: str, before: datetime, window: timedelta) -> int:
        return self._user(user_id).declines_in(before, window)

    def transfers_received(self, user_id: str, before: datetime, window: timedelta) -> int:
        times = self._received.get(user_id, [])
        return bisect.bisect_left(times, before) - bisect.bisect_left(times, before - window)

    def usual_amount_minor(self, user_id: str, currency: str, before: datetime) -> int | None:
        amounts: list[int] = []
        for payment in reversed(self._recent(user_id, before)):
            if payment.outcome == "succeeded" and payment.currency == currency:
                amounts.append(payment.amount_minor)
                if len(amounts) == USUAL_SAMPLE_MAX:
                    break
        if not amounts:
            return None
        amounts.sort()
        return amounts[(len(amounts) - 1) // 2]

    def instrument_used_before(self, user_id: str, instrument: str, before: datetime) -> bool:
        return any(p.instrument == instrument for p in self._recent(user_id, before))

    def countries(self, user_id: str, before: datetime) -> tuple[str | None, str | None, frozenset[str]]:
        series = self._user(user_id)
        recent = self._recent(user_id, before)
        if not recent:
            return None, None, frozenset()
        return series.payments[0].country, recent[-1].country, frozenset(p.country for p in recent if p.country)

    def ip_seen(self, user_id: str, ip: str | None, before: datetime) -> bool:
        return ip is not None and any(p.ip == ip for p in self._recent(user_id, before))


def offline(payments: Iterable[Payment]) -> Iterable[tuple[Payment, Features]]:
    """Each payment of a created_at-ordered stream with its features from the payments before it."""
    history = MemoryHistory()
    for payment in payments:
        yield payment, features(payment, history)
        history.add(payment)
