-- The operator console (issue 11, paycell/console): its sign-in sessions, and indexes for its
-- reads across users. Runs as the owner role (migrations >= 0009); `{app_role}` is replaced with
-- its quoted name.
--
-- 1. console_session: one row per sign-in. The cookie carries `<user_id>:<secret>`; only the
--    secret's SHA-256 is stored, so a copy of this table opens no session. A session ends at
--    `expires_at` (never later than the token that opened it) or when its operator signs out
--    (`ended_at`). Keyed by the operator's user id first, as every user-scoped table (Citus), so a
--    request's session lookup is one primary-key probe on one shard.
CREATE TABLE console_session (
    user_id       text NOT NULL CHECK (length(user_id) <= 64),
    session_hash  bytea NOT NULL CHECK (length(session_hash) = 32),
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    ended_at      timestamptz,
    PRIMARY KEY (user_id, session_hash),
    CONSTRAINT console_session_expiry CHECK (expires_at > created_at)
);
GRANT SELECT, INSERT, DELETE ON console_session TO {app_role};
GRANT UPDATE (ended_at) ON console_session TO {app_role};

-- 2. Paused schedules (by their user, or by the clock after repeated failures), latest first. A
--    schedule's row is rewritten by the clock on every run, never HOT already (payment_schedule_due_at
--    names next_run_at); a partial index adds an entry only for the few paused rows.
--    (The console finds a payment by its id alone through the event log's existing index,
--    event_payment: no index is added to payment_request, whose writes are the hot path.)
CREATE INDEX payment_schedule_paused ON payment_schedule (updated_at DESC) WHERE status = 'paused';
