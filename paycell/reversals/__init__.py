"""Reversals (issue 13): taking back money a PSP moved for a payment. A pay-in is refunded (whole
or in part), a pay-out recalled (whole: a rail recalls a credit transfer, it does not split it).

A reversal is its own record (payment_reversal, migration 0024) with its own states
(paycell/workflow.py, REVERSAL_STATES). It is asked for in one of two ways:
  - an operator reverses a completed payment (API, CLI): `request.reverse_payment`;
  - the reversal policy (`policy.py`) reverses a payment whose settlement posting failed past its
    retries after the PSP moved the money, when PAYCELL_REVERSAL_POLICY says so for that kind of
    failure (otherwise the payment waits for a human, as before).
Either way the amount is checked against what remains of the payment, and reserved, under the
order's row lock (and again by Postgres when the row is inserted), so two concurrent reversals
never exceed the payment. The `reverse` step (paycell/actors/reverse.py) then asks the PSP outside
any transaction, keyed by the reversal id, and posts the compensating transaction (never an edit)
under the order's lock.
"""
