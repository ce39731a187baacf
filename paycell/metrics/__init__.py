"""Prometheus metrics (prometheus_client): what each process exposes about itself."""
