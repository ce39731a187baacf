"""Account references on the API, and what kind of payment a pair of them makes.

A user's wallet is `wallet:<user_id>`; an external instrument is the token its PSP issued
(`tok_<instrument>_<...>`). Pay-in: instrument -> the caller's wallet. Pay-out: the caller's
wallet -> instrument. Transfer: the caller's wallet -> another user's wallet, no PSP.
"""
from __future__ import annotations

import re

import msgspec

from paycell.errors import Forbidden, Unprocessable
from paycell.psp.registry import OPTION_INSTRUMENT, instrument_kind

USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_WALLET = re.compile(r"wallet:(" + USER_ID.pattern + ")")
PAYMENT_OPTIONS = (*OPTION_INSTRUMENT, "wallet")


class Ref(msgspec.Struct, frozen=True):
    user_id: str | None = None     # set for a wallet
    instrument: str | None = None  # set for a PSP token: card, bank, paypal, applepay, googlepay


def parse_ref(text: str, field: str) -> Ref:
    wallet = _WALLET.fullmatch(text)
    if wallet:
        return Ref(user_id=wallet[1])
    kind = instrument_kind(text)
    if kind:
        return Ref(instrument=kind)
    raise Unprocessable(f"{field} {text[:80]!r} is neither `wallet:<user_id>` nor a PSP token (`tok_...`)",
                        code="account_invalid", field=field)


def classify(caller: str, from_acct: str, to_acct: str, payment_option: str) -> str:
    """'payin', 'payout' or 'transfer'; raises a typed error for any pair paycell cannot move."""
    if payment_option not in PAYMENT_OPTIONS:
        raise Unprocessable(f"payment_option must be one of {', '.join(PAYMENT_OPTIONS)}",
                            code="payment_option_invalid", field="payment_option")
    src, dst = parse_ref(from_acct, "from_acct"), parse_ref(to_acct, "to_acct")
    if src.instrument and dst.instrument:
        raise Unprocessable("one side of a payment must be a paycell wallet", code="unsupported_flow",
                            field="to_acct")
    if src.user_id and dst.user_id:
        kind, instrument = "transfer", None
        if src.user_id == dst.user_id:
            raise Unprocessable("a transfer needs two different wallets", code="unsupported_flow", field="to_acct")
    else:
        kind = "payin" if src.instrument else "payout"
        instrument = src.instrument or dst.instrument
    own = dst if kind == "payin" else src
    if own.user_id != caller:
        field = "to_acct" if kind == "payin" else "from_acct"
        raise Forbidden(f"{field} must be your own wallet, wallet:{caller}", field=field)
    expected = "wallet" if instrument is None else next(o for o, i in OPTION_INSTRUMENT.items() if i == instrument)
    if payment_option != expected:
        raise Unprocessable(f"payment_option {payment_option!r} does not fit this payment; expected {expected!r}",
                            code="payment_option_mismatch", field="payment_option")
    return kind
