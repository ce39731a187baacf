-- Payment requests (the seed's "Payment Request Table") and payment orders (its "Payment Order
-- Status Table"), plus the idempotency keys of the API. Money is integer minor units
-- (`amount_minor`) with an ISO 4217 currency: the seed's string `amount` lives on the wire only.
CREATE TABLE payment_request (
    payment_id      uuid NOT NULL,             -- the checkout UUID the client sent
    user_id         text NOT NULL,
    payment_option  text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('payin', 'payout', 'transfer')),
    from_acct       text NOT NULL,
    to_acct         text NOT NULL,
    amount_minor    bigint NOT NULL CHECK (amount_minor > 0),
    currency        char(3) NOT NULL,
    status          text NOT NULL DEFAULT 'processing'
                        CHECK (status IN ('processing', 'succeeded', 'failed', 'needs_attention')),
    failure_code    text,
    is_complete     boolean NOT NULL DEFAULT false,
    notify_on_done  boolean NOT NULL DEFAULT false,
    scheduled_payment_id uuid,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, payment_id)          -- scoped to the user: the shard key leads
);
CREATE INDEX payment_request_user_recent ON payment_request (user_id, created_at DESC, payment_id DESC);

CREATE TABLE payment_order (
    payment_order_id      uuid PRIMARY KEY,
    payment_id            uuid NOT NULL,
    user_id               text NOT NULL,
    kind                  text NOT NULL CHECK (kind IN ('payin', 'payout', 'transfer')),
    from_acct             text NOT NULL,
    to_acct               text NOT NULL,
    amount_minor          bigint NOT NULL CHECK (amount_minor > 0),
    currency              char(3) NOT NULL,
    payment_order_status  text NOT NULL,
    ledger_updated        boolean NOT NULL DEFAULT false,
    wallet_updated        boolean NOT NULL DEFAULT false,
    psp                   text,
    psp_reference         text,
    attempt               integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    lease_until           timestamptz,
    deadline_at           timestamptz NOT NULL,
    failure_code          text,
    last_error            text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (user_id, payment_id) REFERENCES payment_request (user_id, payment_id)
);
CREATE INDEX payment_order_payment ON payment_order (user_id, payment_id);
-- The re-drive sweeper scans only live orders.
CREATE INDEX payment_order_live ON payment_order (lease_until)
    WHERE payment_order_status NOT IN ('completed', 'failed', 'needs_attention');

CREATE TABLE idempotency_key (
    user_id          text NOT NULL,
    key              text NOT NULL,
    request_sha256   bytea NOT NULL,
    response_status  integer NOT NULL,
    response_body    bytea NOT NULL,
    locked_until     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);

GRANT SELECT, INSERT, UPDATE ON payment_request, payment_order, idempotency_key TO {app_role};
