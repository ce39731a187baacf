"""PayPal: the connector (connector.py, registered as `paypal`), its wire format (wire.py), HTTP
client (client.py), webhook verification (webhooks.py), and the simulator of PayPal's API
(simulator.py with sim_*.py, the STL settlement report in report.py)."""
