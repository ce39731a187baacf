"""The simulator's test PaymentMethods: Stripe's own test ids (docs.stripe.com/testing), each with
the outcome Stripe's test mode gives it, plus two ids of paycell's own (marked) for what Stripe's
test mode has no id for.

Cards (Apple Pay and Google Pay are card PaymentMethods at Stripe):
    pm_card_visa, pm_card_mastercard, pm_card_amex ...     succeed
    pm_card_visa_chargeDeclined, pm_card_chargeCustomerFail  402 card_declined / generic_decline
    pm_card_visa_chargeDeclinedInsufficientFunds            402 card_declined / insufficient_funds
    pm_card_visa_chargeDeclinedLostCard / ...StolenCard     402 card_declined / lost_card, stolen_card
    pm_card_chargeDeclinedFraudulent                        402 card_declined / fraudulent
    pm_card_visa_chargeDeclinedVelocityLimitExceeded        402 card_declined / card_velocity_exceeded
    pm_card_chargeDeclinedExpiredCard                       402 expired_card
    pm_card_chargeDeclinedIncorrectCvc                      402 incorrect_cvc
    pm_card_chargeDeclinedProcessingError                   402 processing_error
    pm_card_threeDSecure2Required, pm_card_threeDSecureRequired, pm_card_authenticationRequired
                                                            requires_action; succeed once authenticated
    pm_card_authenticationRequiredChargeDeclinedInsufficientFunds
                                                            requires_action; declined once authenticated
    pm_card_createDispute                                   succeeds, then is disputed (fraudulent)
ACH Direct Debit (`us_bank_account`): `processing`, then after business days
    pm_usBankAccount, pm_usBankAccount_success              succeeds after 4 business days
    pm_usBankAccount_insufficientFunds                      fails after 2: insufficient_funds (R01)
    pm_usBankAccount_accountClosed                          fails after 2: account_closed (R02)
    pm_usBankAccount_noAccount                              fails after 2: no_account (R03)
    pm_usBankAccount_invalidAccountNumber  (paycell's own)  fails after 2: invalid_account_number (R04)
    pm_usBankAccount_debitNotAuthorized                     fails after 2: debit_not_authorized (R10)
    pm_usBankAccount_lateReturn            (paycell's own)  succeeds after 4, then 2 business days
                                                            later is returned as a dispute
                                                            (debit_not_authorized, R10)
Any other id answers 400 resource_missing, as Stripe does for a PaymentMethod it does not know.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ACH_SETTLE_BUSINESS_DAYS = 4
ACH_FAIL_BUSINESS_DAYS = 2
ACH_RETURN_BUSINESS_DAYS = 2


@dataclass(frozen=True)
class Decline:
    code: str  # Stripe's error code
    message: str
    decline_code: str | None = None  # the issuer's reason, for code card_declined


@dataclass(frozen=True)
class SimMethod:
    type: Literal["card", "us_bank_account"]
    brand: str = "visa"  # cards; for bank accounts, the bank's name
    last4: str = "4242"
    decline: Decline | None = None  # declined at once (cards) or after the debit fails (ACH)
    authenticate: bool = False  # 3-D Secure: requires_action first
    dispute_reason: str | None = None  # succeeds, then is disputed / returned with this reason


_GENERIC = Decline("card_declined", "Your card was declined.", "generic_decline")


def _declined(decline_code: str, message: str) -> Decline:
    return Decline("card_declined", message, decline_code)


def _ach_failure(code: str, message: str) -> Decline:
    return Decline(code, message)


METHODS: dict[str, SimMethod] = {
    "pm_card_visa": SimMethod("card"),
    "pm_card_visa_debit": SimMethod("card", last4="5556"),
    "pm_card_mastercard": SimMethod("card", "mastercard", "4444"),
    "pm_card_mastercard_debit": SimMethod("card", "mastercard", "8210"),
    "pm_card_amex": SimMethod("card", "amex", "8431"),
    "pm_card_discover": SimMethod("card", "discover", "1117"),
    "pm_card_jcb": SimMethod("card", "jcb", "0000"),
    "pm_card_unionpay": SimMethod("card", "unionpay", "0005"),
    "pm_card_visa_chargeDeclined": SimMethod("card", last4="0002", decline=_GENERIC),
    "pm_card_chargeCustomerFail": SimMethod("card", last4="0341", decline=_GENERIC),
    "pm_card_visa_chargeDeclinedInsufficientFunds": SimMethod(
        "card", last4="9995", decline=_declined("insufficient_funds", "Your card has insufficient funds.")),
    "pm_card_visa_chargeDeclinedLostCard": SimMethod(
        "card", last4="9987", decline=_declined("lost_card", "Your card was declined.")),
    "pm_card_visa_chargeDeclinedStolenCard": SimMethod(
        "card", last4="9979", decline=_declined("stolen_card", "Your card was declined.")),
    "pm_card_chargeDeclinedFraudulent": SimMethod(
        "card", last4="0019", decline=_declined("fraudulent", "Your card was declined.")),
    "pm_card_visa_chargeDeclinedVelocityLimitExceeded": SimMethod(
        "card", last4="6975", decline=_declined("card_velocity_exceeded", "Your card was declined.")),
    "pm_card_chargeDeclinedExpiredCard": SimMethod(
        "card", last4="0069", decline=Decline("expired_card", "Your card has expired.")),
    "pm_card_chargeDeclinedIncorrectCvc": SimMethod(
        "card", last4="0127", decline=Decline("incorrect_cvc", "Your card's security code is incorrect.")),
    "pm_card_chargeDeclinedProcessingError": SimMethod(
        "card", last4="0119",
        decline=Decline("processing_error", "An error occurred while processing your card. Try again in a little bit.")),
    "pm_card_threeDSecure2Required": SimMethod("card", last4="3220", authenticate=True),
    "pm_card_threeDSecureRequired": SimMethod("card", last4="3063", authenticate=True),
    "pm_card_authenticationRequired": SimMethod("card", last4="3184", authenticate=True),
    "pm_card_authenticationRequiredChargeDeclinedInsufficientFunds": SimMethod(
        "card", last4="3178", authenticate=True,
        decline=_declined("insufficient_funds", "Your card has insufficient funds.")),
    "pm_card_createDispute": SimMethod("card", last4="0259", dispute_reason="fraudulent"),
    "pm_usBankAccount": SimMethod("us_bank_account", "STRIPE TEST BANK", "6789"),
    "pm_usBankAccount_success": SimMethod("us_bank_account", "STRIPE TEST BANK", "6789"),
    "pm_usBankAccount_insufficientFunds": SimMethod(
        "us_bank_account", "STRIPE TEST BANK", "2227",
        decline=_ach_failure("insufficient_funds", "The customer's account has insufficient funds to cover this payment.")),
    "pm_usBankAccount_accountClosed": SimMethod(
        "us_bank_account", "STRIPE TEST BANK", "1113",
        decline=_ach_failure("account_closed", "The customer's bank account has been closed.")),
    "pm_usBankAccount_noAccount": SimMethod(
        "us_bank_account", "STRIPE TEST BANK", "1116",
        decline=_ach_failure("no_account", "The customer's bank account could not be located.")),
    "pm_usBankAccount_invalidAccountNumber": SimMethod(
        "us_bank_account", "STRIPE TEST BANK", "1119",
        decline=_ach_failure("invalid_account_number", "The customer's bank account number is invalid.")),
    "pm_usBankAccount_debitNotAuthorized": SimMethod(
        "us_bank_account", "STRIPE TEST BANK", "2335",
        decline=_ach_failure("debit_not_authorized", "The customer has notified their bank that this payment was unauthorized.")),
    "pm_usBankAccount_lateReturn": SimMethod(
        "us_bank_account", "STRIPE TEST BANK", "6781", dispute_reason="debit_not_authorized"),
}
