"""Account references on the API, and what kind of payment a pair of them makes.

A user's wallet is `wallet:<user_id>`; an external instrument is the token or id its PSP issued
(the test simulator's `tok_card_ok`, Stripe's `pm_...`, an Adyen stored payment method id, a
PayPal payer's email, a bank's counterparty id): a conservative charset and length here, the
connectors' own patterns (paycell.psp.registry.token_fits) when it is attached, and the payment's
gate (payments.accept) checks that the caller attached it with this payment option on a
connector of the payment's route. Pay-in: instrument -> the caller's wallet. Pay-out: the
caller's wallet -> instrument. Transfer: the caller's wallet -> another user's wallet, no PSP.
"""
from __future__ import annotations

import re

import msgspec

from paycell.config import Settings
from paycell.errors import Forbidden, Unprocessable
from paycell.psp import registry, routing

USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_WALLET = re.compile(r"wallet:(" + USER_ID.pattern + ")")
# A provider's token or id: no `:` (a wallet's), no `/`, no spaces or controls, at most 200 chars.
TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,199}")
PAYMENT_OPTIONS = (*registry.PAYMENT_OPTIONS, "wallet")


class Ref(msgspec.Struct, frozen=True):
    user_id: str | None = None     # set for a wallet
    instrument: str | None = None  # set for a PSP token or id


def parse_ref(text: str, field: str) -> Ref:
    wallet = _WALLET.fullmatch(text)
    if wallet:
        return Ref(user_id=wallet[1])
    if TOKEN.fullmatch(text):
        return Ref(instrument=text)
    raise Unprocessable(f"{field} {text[:80]!r} is neither `wallet:<user_id>` nor a PSP token",
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
        kind = "transfer"
        if src.user_id == dst.user_id:
            raise Unprocessable("a transfer needs two different wallets", code="unsupported_flow", field="to_acct")
    else:
        kind = "payin" if src.instrument else "payout"
    own = dst if kind == "payin" else src
    if own.user_id != caller:
        field = "to_acct" if kind == "payin" else "from_acct"
        raise Forbidden(f"{field} must be your own wallet, wallet:{caller}", field=field)
    if (kind == "transfer") != (payment_option == "wallet"):
        expected = "wallet" if kind == "transfer" else f"one of {', '.join(registry.PAYMENT_OPTIONS)}"
        raise Unprocessable(f"payment_option {payment_option!r} does not fit this payment; expected {expected}",
                            code="payment_option_mismatch", field="payment_option")
    return kind


def check_instrument(token: str, field: str, payment_option: str, currency: str, settings: Settings) -> None:
    """Refuse, before any query, a token no connector could have attached (account_invalid) or
    one no connector of the payment's route issues for its payment option (payment_option_mismatch).
    Whether the caller attached it is the gate's question (payments.accept)."""
    names = registry.all_names(settings)
    if not any(registry.options_fitting(name, token, settings) for name in names):
        raise Unprocessable(f"{field} {token[:80]!r} is no PSP token any connector issues",
                            code="account_invalid", field=field)
    route = routing.route(settings, payment_option, currency)
    if not any(registry.token_fits(name, payment_option, token, settings) for name in route):
        raise Unprocessable(f"payment_option {payment_option!r} does not fit {field}: no connector routed for it "
                            f"({', '.join(route)}) issues such a token", code="payment_option_mismatch",
                            field="payment_option")
