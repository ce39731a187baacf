"""A seeded generator of synthetic payment history with labelled fraud (issue 8).

No real history exists, so the demo, the tests and the benchmark train and score on this. One
`random.Random(seed)` drives everything: the same seed gives the same payments, byte for byte.

Legitimate users have an account age, a home country, a few usual IPs, instruments attached over
time, a median amount in their currency and active hours; they pay in, pay out and transfer at
their own pace. Fraud episodes are injected on top, each payment labelled with its pattern:
- card_testing: a fresh account tries many fresh cards for small amounts within minutes; most
  are declined.
- account_takeover: an existing user's account pays in from a new country and IP, attaches a new
  bank account and pays out several times its usual amount to it.
- velocity_burst: one of a user's own cards is drained by many pay-ins within half an hour, from
  an unfamiliar IP.
- mule_transfer: many users transfer to one young account within hours, which pays it all out.
Episodes are added until fraud is `fraud_share` of all payments (2 % by default), with at least
one of each pattern.

Money is integer minor units throughout; a draw from a distribution is rounded to an int once.

    python -m paycell.risk.synthetic --users 1000 --days 30 --seed 7 --out payments.ndjson
"""
from __future__ import annotations

import argparse
import math
import random
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import BinaryIO, Literal

import msgspec

Kind = Literal["payin", "payout", "transfer"]
Outcome = Literal["succeeded", "declined", "other"]  # other: neither (in flight, blocked, returned ...)
PATTERNS = ("card_testing", "account_takeover", "velocity_burst", "mule_transfer")

# Country -> its currency and a typical pay-in in that currency's minor units (JPY has none).
COUNTRIES: dict[str, tuple[str, int]] = {
    "US": ("USD", 4_000), "GB": ("GBP", 3_500), "DE": ("EUR", 3_800), "FR": ("EUR", 3_800),
    "ES": ("EUR", 3_000), "NL": ("EUR", 4_000), "SE": ("SEK", 40_000), "PL": ("PLN", 15_000),
    "JP": ("JPY", 5_000), "CA": ("CAD", 5_000), "AU": ("AUD", 5_500), "BR": ("BRL", 20_000),
}
START_DEFAULT = datetime(2026, 1, 1, tzinfo=UTC)
USERS_MAX = 1_000_000
DAYS_MAX = 3_660
PAYMENTS_PER_USER_DAY_MAX = 5.0
ACCOUNT_AGE_DAYS_MAX = 1_500


class Payment(msgspec.Struct, frozen=True, kw_only=True):
    """One generated payment, what the platform knows at its creation, and its label.

    `account_created_at` and `instrument_attached_at` are the user's and the instrument's records
    (the users and instruments tables online); `fraud`/`pattern` are the label, never a feature."""

    payment_id: str
    user_id: str
    kind: Kind
    amount_minor: int
    currency: str
    payment_option: str          # card, bank_account, paypal; "wallet" for a transfer
    instrument: str | None       # None for a transfer (wallet to wallet)
    counterparty_user_id: str | None  # the receiving user of a transfer
    ip: str | None               # None: unknown (online, a request no trusted proxy located)
    country: str | None
    created_at: datetime
    outcome: Outcome
    account_created_at: datetime
    instrument_attached_at: datetime | None
    fraud: bool
    pattern: str | None


class Instrument(msgspec.Struct, kw_only=True):
    instrument: str
    payment_option: str
    attached_at: datetime


class User(msgspec.Struct, kw_only=True):
    user_id: str
    created_at: datetime
    home_country: str
    currency: str
    ips: list[str]
    instruments: list[Instrument]
    median_amount_minor: int
    active_hour_first: int       # UTC hour the user's active window opens
    active_hours: int            # its length in hours
    payments_per_day: float


class _Draft(msgspec.Struct, kw_only=True):
    user: User
    kind: Kind
    amount_minor: int
    instrument: Instrument | None
    counterparty_user_id: str | None
    ip: str
    country: str
    created_at: datetime
    outcome: Outcome
    pattern: str | None


def _ip(rng: random.Random) -> str:
    return f"{rng.randint(11, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def _token(rng: random.Random, prefix: str) -> str:
    return f"{prefix}_{rng.getrandbits(64):016x}"


def _minor(rng: random.Random, median_minor: int, sigma: float) -> int:
    """A lognormal draw around `median_minor`, rounded once to a positive int."""
    return max(1, round(median_minor * rng.lognormvariate(0.0, sigma)))


def _foreign_country(rng: random.Random, home: str) -> str:
    return rng.choice([c for c in COUNTRIES if c != home])


def _make_user(rng: random.Random, user_id: str, created_at: datetime, country: str | None = None) -> User:
    home = country or rng.choice(list(COUNTRIES))
    currency, typical_minor = COUNTRIES[home]
    user = User(
        user_id=user_id, created_at=created_at, home_country=home, currency=currency,
        ips=[_ip(rng) for _ in range(rng.randint(1, 3))], instruments=[],
        median_amount_minor=_minor(rng, typical_minor, 0.6),
        active_hour_first=rng.randint(5, 14), active_hours=rng.randint(6, 14),
        payments_per_day=min(PAYMENTS_PER_USER_DAY_MAX, rng.lognormvariate(math.log(0.4), 0.7)),
    )
    _attach(rng, user, "card", created_at + timedelta(minutes=rng.uniform(1, 120)))
    _attach(rng, user, "bank_account", created_at + timedelta(days=rng.uniform(0, 10)))
    if rng.random() < 0.3:
        _attach(rng, user, "paypal", created_at + timedelta(days=rng.uniform(0, 60)))
    if rng.random() < 0.3:
        _attach(rng, user, "card", created_at + timedelta(days=rng.uniform(30, 400)))
    return user


def _attach(rng: random.Random, user: User, option: str, at: datetime) -> Instrument:
    instrument = Instrument(instrument=_token(rng, "ins"), payment_option=option, attached_at=at)
    user.instruments.append(instrument)
    return instrument


def _population(rng: random.Random, users: int, start: datetime, end: datetime) -> list[User]:
    span_days = (end - start).total_seconds() / 86_400
    population = []
    for index in range(users):
        if rng.random() < 0.1:  # joins during the span
            created_at = start + timedelta(days=rng.uniform(0, span_days * 0.9))
        else:
            created_at = start - timedelta(days=rng.uniform(1, ACCOUNT_AGE_DAYS_MAX))
        population.append(_make_user(rng, f"usr_{index:07d}", created_at))
    return population


def _active_time(rng: random.Random, user: User, first: datetime, end: datetime) -> datetime:
    day = first + timedelta(days=rng.uniform(0, (end - first).total_seconds() / 86_400))
    hour = (user.active_hour_first + rng.randrange(user.active_hours)) % 24
    return day.replace(hour=hour, minute=rng.randrange(60), second=rng.randrange(60), microsecond=0)


def _usable(user: User, options: tuple[str, ...], at: datetime) -> list[Instrument]:
    return [i for i in user.instruments if i.payment_option in options and i.attached_at < at]


def _legitimate(rng: random.Random, user: User, population: list[User], start: datetime,
                end: datetime) -> list[_Draft]:
    first = max(start, user.created_at + timedelta(hours=1))
    if first >= end:
        return []
    expected = user.payments_per_day * (end - first).total_seconds() / 86_400
    count = max(0, round(rng.gauss(expected, math.sqrt(expected))))
    drafts = []
    for _ in range(count):
        at = _active_time(rng, user, first, end)
        if not first <= at < end:  # the active hour fell before the account opened or after the span
            continue
        kind: Kind = rng.choices(("payin", "payout", "transfer"), weights=(70, 18, 12))[0]
        instrument = None
        counterparty = None
        if kind == "payin":
            usable = _usable(user, ("card", "paypal", "bank_account"), at)
            amount = _minor(rng, user.median_amount_minor, 0.5)
        elif kind == "payout":
            usable = _usable(user, ("bank_account", "paypal"), at)
            amount = _minor(rng, user.median_amount_minor * 2, 0.5)
        else:
            usable = []
            amount = _minor(rng, user.median_amount_minor // 2 + 1, 0.6)
            counterparty = rng.choice(population).user_id
            if counterparty == user.user_id:
                continue
        if kind != "transfer":
            if not usable:
                continue
            instrument = rng.choice(usable)
        travelling = rng.random() < 0.02
        country = _foreign_country(rng, user.home_country) if travelling else user.home_country
        ip = _ip(rng) if travelling or rng.random() < 0.05 else rng.choice(user.ips)
        declined = rng.random() < (0.03 if kind == "payin" else 0.01)
        drafts.append(_Draft(user=user, kind=kind, amount_minor=amount, instrument=instrument,
                             counterparty_user_id=counterparty, ip=ip, country=country, created_at=at,
                             outcome="declined" if declined else "succeeded", pattern=None))
    return drafts


def _card_testing(rng: random.Random, at: datetime, population: list[User]) -> list[_Draft]:
    fraudster = _make_user(rng, _token(rng, "usr"), at - timedelta(hours=rng.uniform(0.5, 48)))
    population.append(fraudster)
    ip, country = _ip(rng), _foreign_country(rng, fraudster.home_country)
    drafts = []
    for _ in range(rng.randint(10, 30)):
        at += timedelta(seconds=rng.uniform(5, 40))
        card = _attach(rng, fraudster, "card", at - timedelta(seconds=rng.uniform(1, 30)))
        small_minor = max(1, fraudster.median_amount_minor // rng.randint(10, 40))
        drafts.append(_Draft(user=fraudster, kind="payin", amount_minor=small_minor, instrument=card,
                             counterparty_user_id=None, ip=ip, country=country, created_at=at,
                             outcome="declined" if rng.random() < 0.75 else "succeeded",
                             pattern="card_testing"))
    return drafts


ESTABLISHED_DRAWS_MAX = 10_000


def _established(rng: random.Random, population: list[User], at: datetime) -> User:
    """A user whose account is at least 30 days old at `at` (the victims of takeovers and scams)."""
    for _ in range(ESTABLISHED_DRAWS_MAX):
        user = rng.choice(population)
        if user.created_at < at - timedelta(days=30):
            return user
    raise ValueError("no account is 30 days old: generate more users")


def _account_takeover(rng: random.Random, at: datetime, population: list[User]) -> list[_Draft]:
    victim = _established(rng, population, at)
    ip, country = _ip(rng), _foreign_country(rng, victim.home_country)
    bank = _attach(rng, victim, "bank_account", at + timedelta(minutes=rng.uniform(1, 10)))
    card = rng.choice(_usable(victim, ("card",), at))
    drafts = [_Draft(user=victim, kind="payin", amount_minor=_minor(rng, victim.median_amount_minor * 3, 0.3),
                     instrument=card, counterparty_user_id=None, ip=ip, country=country, created_at=at,
                     outcome="succeeded", pattern="account_takeover")]
    at = bank.attached_at
    for _ in range(rng.randint(1, 3)):
        at += timedelta(minutes=rng.uniform(1, 15))
        drafts.append(_Draft(user=victim, kind="payout", instrument=bank, counterparty_user_id=None,
                             amount_minor=victim.median_amount_minor * rng.randint(5, 20), ip=ip,
                             country=country, created_at=at, outcome="succeeded", pattern="account_takeover"))
    return drafts


def _velocity_burst(rng: random.Random, at: datetime, population: list[User]) -> list[_Draft]:
    victim = _established(rng, population, at)
    card = rng.choice(_usable(victim, ("card",), at))
    ip = _ip(rng)
    drafts = []
    for _ in range(rng.randint(8, 20)):
        at += timedelta(seconds=rng.uniform(20, 180))
        drafts.append(_Draft(user=victim, kind="payin", amount_minor=_minor(rng, victim.median_amount_minor, 0.4),
                             instrument=card, counterparty_user_id=None, ip=ip, country=victim.home_country,
                             created_at=at, outcome="declined" if rng.random() < 0.2 else "succeeded",
                             pattern="velocity_burst"))
    return drafts


def _mule_transfer(rng: random.Random, at: datetime, population: list[User]) -> list[_Draft]:
    senders = list({u.user_id: u for u in (_established(rng, population, at)
                                            for _ in range(rng.randint(5, 12)))}.values())
    mule = _make_user(rng, _token(rng, "usr"), at - timedelta(days=rng.uniform(1, 10)),
                      country=senders[0].home_country)
    population.append(mule)
    drafts = []
    received_minor = 0
    for sender in senders:
        sent_at = at + timedelta(minutes=rng.uniform(0, 180))
        amount = _minor(rng, sender.median_amount_minor * 2, 0.4)
        received_minor += amount
        drafts.append(_Draft(user=sender, kind="transfer", amount_minor=amount, instrument=None,
                             counterparty_user_id=mule.user_id, ip=rng.choice(sender.ips),
                             country=sender.home_country, created_at=sent_at, outcome="succeeded",
                             pattern="mule_transfer"))
    last = max(d.created_at for d in drafts)
    bank = _attach(rng, mule, "bank_account", mule.created_at + timedelta(hours=rng.uniform(1, 20)))
    payouts = rng.randint(1, 2)
    for index in range(payouts):
        share_minor = received_minor // payouts + (received_minor % payouts if index == 0 else 0)
        drafts.append(_Draft(user=mule, kind="payout", amount_minor=share_minor, instrument=bank,
                             counterparty_user_id=None, ip=mule.ips[0], country=mule.home_country,
                             created_at=last + timedelta(minutes=rng.uniform(5, 60)), outcome="succeeded",
                             pattern="mule_transfer"))
    return drafts


EPISODES = {"card_testing": _card_testing, "account_takeover": _account_takeover,
            "velocity_burst": _velocity_burst, "mule_transfer": _mule_transfer}


def _frauds(rng: random.Random, population: list[User], legitimate: int, fraud_share: float,
            start: datetime, end: datetime) -> list[_Draft]:
    target = math.ceil(legitimate * fraud_share / (1 - fraud_share))
    span_s = (end - start).total_seconds()
    drafts: list[_Draft] = []
    episode = 0
    while episode < len(PATTERNS) or len(drafts) < target:
        if episode % len(PATTERNS) == 0:
            order = list(PATTERNS)
            rng.shuffle(order)
        at = start + timedelta(seconds=rng.uniform(span_s * 0.05, span_s * 0.9))
        drafts.extend(EPISODES[order[episode % len(PATTERNS)]](rng, at, population))
        episode += 1
    return drafts


def generate(*, users: int, days: int, seed: int, start: datetime = START_DEFAULT,
             fraud_share: float = 0.02) -> Iterator[Payment]:
    """Payments of `users` users over `days` days from `start`, in created_at order."""
    if not 1 <= users <= USERS_MAX or not 1 <= days <= DAYS_MAX:
        raise ValueError(f"users must be in 1..{USERS_MAX} and days in 1..{DAYS_MAX}")
    if not 0 < fraud_share < 0.5:
        raise ValueError("fraud_share must be in (0, 0.5)")
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    rng = random.Random(seed)
    end = start + timedelta(days=days)
    population = _population(rng, users, start, end)
    drafts = [d for user in list(population) for d in _legitimate(rng, user, population, start, end)]
    drafts += _frauds(rng, population, len(drafts), fraud_share, start, end)
    drafts.sort(key=lambda d: (d.created_at, d.user.user_id, d.kind, d.amount_minor))
    for index, d in enumerate(drafts):
        yield Payment(
            payment_id=f"pay_{seed}_{index:09d}", user_id=d.user.user_id, kind=d.kind,
            amount_minor=d.amount_minor, currency=d.user.currency,
            payment_option=d.instrument.payment_option if d.instrument else "wallet",
            instrument=d.instrument.instrument if d.instrument else None,
            counterparty_user_id=d.counterparty_user_id, ip=d.ip, country=d.country,
            created_at=d.created_at, outcome=d.outcome, account_created_at=d.user.created_at,
            instrument_attached_at=d.instrument.attached_at if d.instrument else None,
            fraud=d.pattern is not None, pattern=d.pattern,
        )


def write_ndjson(payments: Iterable[Payment], out: BinaryIO, *, progress_every: int = 100_000) -> int:
    """Write one JSON object per line to the binary stream `out`; progress goes to stderr."""
    encoder = msgspec.json.Encoder()
    buffer = bytearray()
    written = 0
    for payment in payments:
        encoder.encode_into(payment, buffer, len(buffer))
        buffer.extend(b"\n")
        written += 1
        if written % progress_every == 0:
            out.write(buffer)
            buffer.clear()
            print(f"synthetic: {written} payments written", file=sys.stderr, flush=True)
    out.write(buffer)
    return written


def read_ndjson(lines: Iterable[bytes]) -> Iterator[Payment]:
    """Decode payments written by `write_ndjson`, one per line."""
    decoder = msgspec.json.Decoder(Payment)
    for line in lines:
        if line.strip():
            yield decoder.decode(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paycell.risk.synthetic", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--days", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", required=True, help="NDJSON file to write, - for stdout")
    parser.add_argument("--fraud-share", type=float, default=0.02)
    args = parser.parse_args(argv)
    payments = generate(users=args.users, days=args.days, seed=args.seed, fraud_share=args.fraud_share)
    print(f"synthetic: generating {args.users} users over {args.days} days (seed {args.seed})",
          file=sys.stderr, flush=True)
    if args.out == "-":
        written = write_ndjson(payments, sys.stdout.buffer)
    else:
        with open(args.out, "wb") as out:
            written = write_ndjson(payments, out)
    print(f"synthetic: {written} payments in {args.out}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
