"""What the Adyen simulator does for each instrument, as Adyen's test environment chooses outcomes.

Pay-ins (`POST /payments`) pick by, first, a magic `paymentMethod.holderName` (as Adyen's test
cards do: the holder name names the refusal) and otherwise by the stored payment method id.

Holder names (any stored id, or none):
    DECLINED 2 Refused          REFERRAL 3 Referral          ERROR 4 Acquirer Error (Error)
    BLOCK_CARD 5 Blocked Card   CARD_EXPIRED 6 Expired Card  INVALID_AMOUNT 7 Invalid Amount
    INVALID_CARD 8 Invalid Card Number                       ISSUER_UNAVAILABLE 9 (Error)
    NOT_SUPPORTED 10            NOT_3D_AUTHENTICATED 11      NOT_ENOUGH_BALANCE 12
    ACQUIRER_FRAUD 14           CANCELLED 15 (Cancelled)     SHOPPER_CANCELLED 16 (Cancelled)
    FRAUD 20                    CVC_DECLINED 24              RESTRICTED_CARD 25
    ISSUER_SUSPECTED_FRAUD 31   AUTHENTICATION_REQUIRED 38
Any other holder name: the stored id decides.

Stored payment method ids (16 characters, as Adyen's) for pay-ins:
    AUTHORISED000001  Authorised
    REFUSED000000002  Refused 2 Refused
    NOBALANCE0000012  Refused 12 Not enough balance
    EXPIRED000000006  Refused 6 Expired Card
    BLOCKED000000005  Refused 5 Blocked Card
    ERROR00000000004  Error 4 Acquirer Error
    CANCELLED0000015  Cancelled 15 Cancelled
    PENDING000000001  Pending; once the clock passes PENDING_SETTLE_S: AUTHORISATION success
    RECEIVED00000001  Received; once the clock passes PENDING_SETTLE_S: AUTHORISATION failure
    THREEDS000000001  RedirectShopper to the simulator's 3-D Secure page; visiting it
                      authenticates, sends AUTHORISATION success and redirects to returnUrl
                      with redirectResult (which /payments/details turns into Authorised)
    THREEDSFAIL00001  as THREEDS000000001, but authentication fails: Refused 11
    IDENTIFY00000001  IdentifyShopper (a threeDS2 fingerprint action: no URL)
    CHALLENGE0000001  ChallengeShopper (a threeDS2 challenge action: no URL)
    PRESENT000000001  PresentToShopper (a QR code with a URL)
    PARTIAL000000001  PartiallyAuthorised for half the amount
    CHARGEBACK000001  Authorised; once the clock passes CHARGEBACK_AFTER_S: CHARGEBACK
                      (reason "Fraudulent transaction", scheme code 10.4)
    NOREFUND00000001  Authorised; every refund of it is `received`, then REFUND success=false
A refund (`POST /payments/{pspReference}/refunds`) of any other authorised payment is `received`,
then REFUND success=true.
Pay-outs (`POST /submitThirdParty`, selectedRecurringDetailReference), all answered
`[payout-submit-received]`:
    PAYOUTOK00000001  PAYOUT_THIRDPARTY success at once (auto-confirmed by the simulated reviewer)
    PAYOUTREFUSED001  PAYOUT_THIRDPARTY failure at once ("Refused")
    PAYOUTDECLINED01  PAYOUT_DECLINE at once (the reviewer declined it)
    PAYOUTEXPIRE0001  PAYOUT_EXPIRE once the clock passes PAYOUT_REVIEW_S (never confirmed)
Any other id: HTTP 422 errorCode 800 "Contract not found", as Adyen answers an unknown detail.
"""
from __future__ import annotations

from typing import Literal

import msgspec

PENDING_SETTLE_S = 3_600.0
CHARGEBACK_AFTER_S = 30 * 86_400.0
PAYOUT_REVIEW_S = 7 * 86_400.0

Action = Literal["redirect", "identify", "challenge", "present"]


class Behaviour(msgspec.Struct, frozen=True, kw_only=True):
    result_code: str
    reason_code: str | None = None
    reason: str | None = None
    action: Action | None = None
    authenticates: bool = True  # for a redirect: whether the 3-D Secure page approves
    later: Literal["authorise", "refuse", "chargeback", "payout_ok", "payout_refused", "payout_declined",
                   "payout_expire"] | None = None
    later_after_s: float = 0.0  # 0: at once
    refund_ok: bool = True  # whether its refunds succeed (REFUND success=true)


def _refused(code: int, reason: str, result_code: str = "Refused") -> Behaviour:
    return Behaviour(result_code=result_code, reason_code=str(code), reason=reason)


HOLDER_NAMES: dict[str, Behaviour] = {
    "DECLINED": _refused(2, "Refused"),
    "REFERRAL": _refused(3, "Referral"),
    "ERROR": _refused(4, "Acquirer Error", "Error"),
    "BLOCK_CARD": _refused(5, "Blocked Card"),
    "CARD_EXPIRED": _refused(6, "Expired Card"),
    "INVALID_AMOUNT": _refused(7, "Invalid Amount"),
    "INVALID_CARD": _refused(8, "Invalid Card Number"),
    "ISSUER_UNAVAILABLE": _refused(9, "Issuer Unavailable", "Error"),
    "NOT_SUPPORTED": _refused(10, "Not supported"),
    "NOT_3D_AUTHENTICATED": _refused(11, "3D Not Authenticated"),
    "NOT_ENOUGH_BALANCE": _refused(12, "Not enough balance"),
    "ACQUIRER_FRAUD": _refused(14, "Acquirer Fraud"),
    "CANCELLED": _refused(15, "Cancelled", "Cancelled"),
    "SHOPPER_CANCELLED": _refused(16, "Shopper Cancelled", "Cancelled"),
    "FRAUD": _refused(20, "FRAUD"),
    "CVC_DECLINED": _refused(24, "CVC Declined"),
    "RESTRICTED_CARD": _refused(25, "Restricted Card"),
    "ISSUER_SUSPECTED_FRAUD": _refused(31, "Issuer Suspected Fraud"),
    "AUTHENTICATION_REQUIRED": _refused(38, "Authentication required"),
}

PAYIN_METHODS: dict[str, Behaviour] = {
    "AUTHORISED000001": Behaviour(result_code="Authorised"),
    "REFUSED000000002": _refused(2, "Refused"),
    "NOBALANCE0000012": _refused(12, "Not enough balance"),
    "EXPIRED000000006": _refused(6, "Expired Card"),
    "BLOCKED000000005": _refused(5, "Blocked Card"),
    "ERROR00000000004": _refused(4, "Acquirer Error", "Error"),
    "CANCELLED0000015": _refused(15, "Cancelled", "Cancelled"),
    "PENDING000000001": Behaviour(result_code="Pending", later="authorise", later_after_s=PENDING_SETTLE_S),
    "RECEIVED00000001": Behaviour(result_code="Received", later="refuse", later_after_s=PENDING_SETTLE_S),
    "THREEDS000000001": Behaviour(result_code="RedirectShopper", action="redirect"),
    "THREEDSFAIL00001": Behaviour(result_code="RedirectShopper", action="redirect", authenticates=False),
    "IDENTIFY00000001": Behaviour(result_code="IdentifyShopper", action="identify"),
    "CHALLENGE0000001": Behaviour(result_code="ChallengeShopper", action="challenge"),
    "PRESENT000000001": Behaviour(result_code="PresentToShopper", action="present"),
    "PARTIAL000000001": Behaviour(result_code="PartiallyAuthorised"),
    "CHARGEBACK000001": Behaviour(result_code="Authorised", later="chargeback", later_after_s=CHARGEBACK_AFTER_S),
    "NOREFUND00000001": Behaviour(result_code="Authorised", refund_ok=False),
}

PAYOUT_METHODS: dict[str, Behaviour] = {
    "PAYOUTOK00000001": Behaviour(result_code="[payout-submit-received]", later="payout_ok"),
    "PAYOUTREFUSED001": Behaviour(result_code="[payout-submit-received]", later="payout_refused"),
    "PAYOUTDECLINED01": Behaviour(result_code="[payout-submit-received]", later="payout_declined"),
    "PAYOUTEXPIRE0001": Behaviour(result_code="[payout-submit-received]", later="payout_expire",
                                  later_after_s=PAYOUT_REVIEW_S),
}

CHARGEBACK_REASON = "Fraudulent transaction"
CHARGEBACK_SCHEME_CODE = "10.4"


def payin_behaviour(holder_name: str | None, stored_id: str | None) -> Behaviour | None:
    if holder_name and holder_name in HOLDER_NAMES:
        return HOLDER_NAMES[holder_name]
    return PAYIN_METHODS.get(stored_id or "")
