-- Scheduled and recurring payments (issue 9), and the periodic jobs' clock that any number of
-- `paycell scheduler` processes may run. Runs as the owner role; `{app_role}` is its quoted name.
--
-- 1. payment_schedule: a payment template (the API's body without payment_id, in minor units) and
--    its recurrence (paycell/schedules/recurrence.py: the RRULE without its end, a local start in
--    an IANA zone, an end by count or local date). `next_occurrence_at` is the next occurrence's
--    instant, `next_run_at` the same plus its jitter: the clock claims active schedules whose
--    next_run_at has come (FOR UPDATE SKIP LOCKED), creates the occurrence's payment and moves both
--    on, in one transaction. A run's payment id is derived from (schedule id, occurrence instant),
--    and it is the payment's idempotency key: an occurrence can make one payment only.
-- 2. schedule_run: one row per occurrence that came: its payment, or `skipped` (missed during
--    downtime: the catch-up policy runs only the latest), or `failed` with no payment (its
--    counterparty was refused). A pending run learns its payment's outcome on a later tick
--    (check_after backs off while the payment is processing).
-- 3. periodic_job: the maintenance actors' cron slots; a slot is claimed by one process.
CREATE TABLE payment_schedule (
    user_id               text NOT NULL,
    schedule_id           uuid NOT NULL,
    kind                  text NOT NULL CHECK (kind IN ('payin', 'payout', 'transfer')),
    payment_option        text NOT NULL,
    from_acct             text NOT NULL,
    to_acct               text NOT NULL,
    amount_minor          bigint NOT NULL CHECK (amount_minor > 0),
    currency              char(3) NOT NULL,
    recurrence            text NOT NULL CHECK (length(recurrence) <= 300),
    time_zone             text NOT NULL CHECK (length(time_zone) <= 60),
    start_local           timestamp NOT NULL,
    end_count             integer CHECK (end_count > 0),
    end_until_local       timestamp,
    status                text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'ended', 'cancelled')),
    paused_reason         text CHECK (paused_reason IN ('paused_by_user', 'failures_max')),
    consecutive_failures  integer NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
    last_resolved_at      timestamptz,  -- occurrence of the latest run whose outcome counted
    last_occurrence_at    timestamptz,
    next_occurrence_at    timestamptz,
    next_run_at           timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, schedule_id),                      -- the shard key leads
    CONSTRAINT payment_schedule_end CHECK (end_count IS NULL OR end_until_local IS NULL),
    CONSTRAINT payment_schedule_due CHECK (status <> 'active' OR next_run_at IS NOT NULL),
    CONSTRAINT payment_schedule_paused CHECK ((status = 'paused') = (paused_reason IS NOT NULL)),
    CONSTRAINT payment_schedule_forward CHECK (next_occurrence_at > last_occurrence_at)
);
-- The clock's claim: active schedules by run time.
CREATE INDEX payment_schedule_due_at ON payment_schedule (next_run_at) WHERE status = 'active';
-- The user's list, newest first (keyset on created_at, schedule_id).
CREATE INDEX payment_schedule_user_recent ON payment_schedule (user_id, created_at DESC, schedule_id DESC);

CREATE TABLE schedule_run (
    user_id        text NOT NULL,
    schedule_id    uuid NOT NULL,
    occurrence_at  timestamptz NOT NULL,
    outcome        text NOT NULL
                       CHECK (outcome IN ('pending', 'succeeded', 'failed', 'returned', 'needs_attention', 'skipped')),
    payment_id     uuid,
    failure_code   text,
    ran_at         timestamptz NOT NULL DEFAULT now(),
    check_after    timestamptz,
    resolved_at    timestamptz,
    PRIMARY KEY (user_id, schedule_id, occurrence_at),
    FOREIGN KEY (user_id, schedule_id) REFERENCES payment_schedule (user_id, schedule_id),
    FOREIGN KEY (user_id, payment_id) REFERENCES payment_request (user_id, payment_id),
    CONSTRAINT schedule_run_payment CHECK (outcome NOT IN ('pending', 'succeeded', 'returned', 'needs_attention')
                                           OR payment_id IS NOT NULL),
    CONSTRAINT schedule_run_skipped CHECK (outcome <> 'skipped' OR payment_id IS NULL),
    CONSTRAINT schedule_run_pending CHECK ((outcome = 'pending') = (check_after IS NOT NULL))
);
-- The outcome reconciler: pending runs whose next look has come.
CREATE INDEX schedule_run_pending_check ON schedule_run (check_after) WHERE outcome = 'pending';
-- A payment made by a schedule names it (payment_request.scheduled_payment_id, 0003).
CREATE INDEX payment_request_scheduled ON payment_request (user_id, scheduled_payment_id)
    WHERE scheduled_payment_id IS NOT NULL;

CREATE TABLE periodic_job (
    name         text PRIMARY KEY CHECK (name ~ '^[a-z][a-z_]{0,62}$'),
    cron         text NOT NULL CHECK (length(cron) <= 100),
    next_run_at  timestamptz NOT NULL,
    last_run_at  timestamptz
);

GRANT SELECT, INSERT, UPDATE ON payment_schedule, schedule_run, periodic_job TO {app_role};
