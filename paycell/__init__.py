"""paycell: wallets, a double-entry ledger, pay-in and pay-out through pluggable PSPs."""
