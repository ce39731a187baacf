"""Admission control: new payments are refused (503, Retry-After) while the pipeline is behind."""
