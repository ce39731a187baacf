"""How each table would be laid out on Citus (docs/scale.md): the one list of which table is
distributed by what, which is a reference table, and which stays on the coordinator.

tests/test_distribution.py reads Postgres's catalog and holds the schema to Citus's rules:
- a distributed table's distribution column is in its primary key and in every unique constraint
  and unique index, and every foreign key to another table of the same colocation group pairs the
  distribution column with itself; a foreign key to a reference table is fine; one to a table of
  another colocation group, or to a local table, is not;
- a reference table may reference only reference tables;
- every table is named here exactly once.

`NOT_YET` names the tables that still break those rules, each with what is missing: the test fails
when one of them stops breaking them (move it to its group) and when any other table starts. It is
empty since migrations 0026 (the payment order's key) and 0027 (the ledger's and the event log's keys;
a system account's slice has an owner key of its own, `system:<slice>`, in the user group): every table
meets them, and `paycell citus distribute` (paycell/citus/) applies this layout on a real cluster.
"""
from __future__ import annotations

# colocation group -> (distribution column, tables). Tables of one group put the rows of one key
# (one user) on one shard: a payment's rows join and lock on one node.
DISTRIBUTED: dict[str, tuple[str, frozenset[str]]] = {
    "user": ("user_id", frozenset({
        "app_user", "instrument", "idempotency_key", "payment_request", "payment_order", "psp_attempt",
        "event", "review_item", "payment_schedule", "schedule_run", "account", "ledger_transaction",
        "ledger_entry", "console_session", "payment_reversal",
    })),
    # A reconciliation run is one provider's file (owner `recon:<connector>`): its rows stay together.
    "recon": ("owner_id", frozenset({"recon_run", "recon_file", "recon_line", "recon_break"})),
    # The webhook inbox: a provider's event arrives before paycell knows whose payment it is.
    "psp_event": ("event_id", frozenset({"psp_event"})),
}

# Small, read on every payment or by every node, written rarely: a copy on every node.
REFERENCE = frozenset({
    "order_transition", "reversal_transition", "risk_rule_set", "risk_rule_set_activation", "risk_list", "risk_list_entry",
    "risk_config_version", "risk_model", "periodic_job", "dead_letter",
})

# The coordinator's own.
LOCAL = frozenset({"schema_migration"})

# Distributed tables that do not meet Citus's rules yet, and why.
NOT_YET: dict[str, str] = {}


def group_of(table: str) -> str | None:
    for group, (_, tables) in DISTRIBUTED.items():
        if table in tables:
            return group
    return None


# Functions that run where their user's rows are (Citus's create_distributed_function): signature ->
# (the argument holding the distribution value, the table to colocate with). A posting's triggers and
# checks then run on the user's node.
FUNCTIONS: dict[str, tuple[str, str]] = {}
