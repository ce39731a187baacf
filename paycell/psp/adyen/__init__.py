"""Adyen: the connector (connector.py, registered as `adyen`), its wire format (wire.py),
notification verification (webhooks.py) and the simulator of its APIs (simulator.py and sim_*.py)."""
