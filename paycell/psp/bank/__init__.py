"""The `bank` connector: ACH pay-ins and pay-outs through Modern Treasury's Payment Orders API
(`connector.py`, `wire.py`, `webhooks.py`), and a simulator of that API on a rail's clock
(`simulator.py`, `rail.py`, `calendar.py`, `report.py`)."""
from paycell.psp.bank.connector import TOKEN_PATTERNS, BankPsp, create, missing

__all__ = ["TOKEN_PATTERNS", "BankPsp", "create", "missing"]
