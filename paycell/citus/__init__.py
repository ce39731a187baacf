"""Laying paycell's schema out on Citus (docs/scale.md): the statements that make the tables
`paycell/store/distribution.py` names reference or distributed tables (`plan`), and preparing a
cluster's nodes and applying them (`cluster`). `paycell citus distribute` runs both."""
