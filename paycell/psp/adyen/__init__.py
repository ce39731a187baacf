"""Adyen: the connector (connector.py, registered as `adyen`), its wire format (wire.py),
notification verification (webhooks.py), the settlement details report reader (report.py), and
the simulator of its APIs (simulator.py; sim_methods.py its test instruments, sim_notify.py its
signed notifications, sim_report.py its settlement report)."""
