"""Stripe: PaymentIntents for cards, Apple Pay / Google Pay (card PaymentMethods at Stripe) and
ACH Direct Debit (`us_bank_account`), through the official SDK's async client.

    connector.py   the `Psp` adapter (registered as connector `stripe`)
    wire.py        Stripe's objects as msgspec Structs, and what each PaymentIntent status means to paycell
    webhooks.py    `Stripe-Signature` verification (the SDK's) and event parsing
    simulator.py   a Stripe-format simulator served by `paycell psp-sim` under /stripe (its HTTP side)
    sim_state.py   the simulator's PaymentIntents, how they move, and the webhooks each move sends
    testmodes.py   the simulator's test PaymentMethods (Stripe's own test ids) and their outcomes
    forms.py       Stripe's form encoding (bracket notation) read back, for the simulator
    report.py      the simulator's itemized balance-change report (CSV, major units)

Nothing here imports the simulator from the connector or the other way round: the simulator must
not depend on the SDK, and the connector must not know the simulator exists.
"""
