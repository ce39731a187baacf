"""Reconciliation (issue 10): find every inconsistency, fix the expected ones, queue the rest.

    catalogue.py         every inconsistency kind: what it means, its automatic fix or none
    internal.py          the hourly checks: orders vs ledger vs wallets vs the PSPs' status calls
    settlement.py        the nightly settlement file: ingest, classify, fees, fixes, report
    formats.py           what the report parsers share (Line, streaming rows, exact amounts)
    stripe_itemized.py   Stripe's itemized balance change report
    adyen_settlement.py  Adyen's settlement details report
    paypal_stl.py        PayPal's settlement report (STL)
    matching.py          matching rules as data (rules.json) and the SQL they compile to
    fixes.py             each fix a compensating ledger transaction plus an event; the review queue
    fetch.py             each provider's report of a day, fetched where the provider serves it
    report.py            the run report as the API and the CLI show it
"""
