-- Dead letters recorded in Postgres too: Redis drops them after Dramatiq's dead_message_ttl.
CREATE TABLE dead_letter (
    dead_letter_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id        text NOT NULL UNIQUE,
    queue_name        text NOT NULL,
    actor_name        text NOT NULL,
    payment_order_id  uuid,
    message           jsonb NOT NULL,
    error             text NOT NULL,
    failed_at         timestamptz NOT NULL DEFAULT now(),
    replayed_at       timestamptz
);
GRANT SELECT, INSERT, UPDATE ON dead_letter TO {app_role};
