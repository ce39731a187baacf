-- Idempotency keys expire (issue 6 item 13): the retention job (paycell/retention.py), run by the
-- app role, deletes keys older than PAYCELL_IDEMPOTENCY_KEY_RETENTION_S, oldest first, in bounded
-- batches. The app role gets DELETE on this table only; the payment requests the keys named stay.
-- Plain statements on a table the migrating role owns: they run as the superuser or as the owner.
CREATE INDEX idempotency_key_created ON idempotency_key (created_at);
GRANT DELETE ON idempotency_key TO {app_role};
