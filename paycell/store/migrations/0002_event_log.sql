-- The event log: an append-only, write-ahead record of everything that happened to a payment.
CREATE TABLE event (
    event_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at       timestamptz NOT NULL DEFAULT now(),
    user_id           text NOT NULL,
    payment_id        uuid,
    payment_order_id  uuid,
    type              text NOT NULL CHECK (type ~ '^[a-z_]+(\.[a-z_]+)+$'),
    data              jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX event_payment ON event (payment_id, event_id) WHERE payment_id IS NOT NULL;

CREATE TRIGGER event_append_only BEFORE UPDATE OR DELETE ON event
    FOR EACH ROW EXECUTE FUNCTION forbid_rewrite();
CREATE TRIGGER event_no_truncate BEFORE TRUNCATE ON event
    FOR EACH STATEMENT EXECUTE FUNCTION forbid_rewrite();

GRANT SELECT ON event TO {app_role};
GRANT INSERT (user_id, payment_id, payment_order_id, type, data) ON event TO {app_role};
