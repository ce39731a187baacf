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

-- 2. The console finds a payment by its id alone (an operator pastes it from a ticket, without
--    its user): this index finds the user (a fan-out probe under Citus, as review_item_by_id;
--    everything after it names (user_id, payment_id) and reads one shard).
CREATE INDEX payment_request_by_id ON payment_request (payment_id);
-- The payments that need a human, newest first, without reading every payment since.
CREATE INDEX payment_request_needs_attention ON payment_request (created_at DESC)
    WHERE status = 'needs_attention';
-- Paused schedules (by the clock after repeated failures, or by their user), latest first.
CREATE INDEX payment_schedule_paused ON payment_schedule (updated_at DESC) WHERE status = 'paused';
