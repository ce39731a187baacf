-- Who may receive money, and what each user may pay in from or out to (issue 6, items 3 and 4).
--
-- app_user: a user is registered on their first authenticated API call (the web process keeps an
-- in-process LRU of users it already registered, so this costs no write per request). A transfer
-- may name as payee only a registered user whose wallet is open; anything else is refused before
-- any row is written, so money can no longer be sent to a wallet nobody holds.
CREATE TABLE app_user (
    user_id        text NOT NULL,
    wallet_status  text NOT NULL DEFAULT 'open' CHECK (wallet_status IN ('open', 'closed')),
    registered_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id)                      -- the shard key
);

-- instrument: a PSP token a user attached through the API. Pay-ins and pay-outs must name an
-- instrument the caller has attached on the connector that will carry the payment. Detaching
-- keeps the row (past payments still name the token); a token may be attached again later,
-- which makes a new instrument.
CREATE TABLE instrument (
    user_id         text NOT NULL REFERENCES app_user (user_id),
    instrument_id   uuid NOT NULL,
    connector       text NOT NULL,
    payment_option  text NOT NULL,
    provider_token  text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    detached_at     timestamptz,
    PRIMARY KEY (user_id, instrument_id)
);
-- One attached instrument per (user, connector, token): attaching twice returns the first one.
-- Also the index of the payment gate's lookup.
CREATE UNIQUE INDEX instrument_attached ON instrument (user_id, connector, provider_token)
    WHERE detached_at IS NULL;
-- The API's list, newest first, keyset-paginated like payments.
CREATE INDEX instrument_user_recent ON instrument (user_id, created_at DESC, instrument_id DESC)
    WHERE detached_at IS NULL;

-- Registration and attachment insert; detaching sets detached_at and nothing else.
GRANT SELECT, INSERT ON app_user, instrument TO {app_role};
GRANT UPDATE (detached_at) ON instrument TO {app_role};
