-- The ledger: accounts, transactions, entries. Double entry: every transaction's entries sum to
-- zero per currency. Entries are immutable; an account's balance changes only through an entry.
-- `{app_role}` is replaced by the runner with the application role's quoted name.

REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO {app_role};

CREATE TABLE account (
    account_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- What the account is for, in the ledger's own words: `wallet:<user>`, `payout_hold:<user>`,
    -- `psp_clearing:<psp>`, `suspense`, ... A hot system account is split over several slices
    -- (rows) so that concurrent postings do not queue on one row lock.
    code           text NOT NULL CHECK (code <> '' AND length(code) <= 200),
    kind           text NOT NULL CHECK (kind IN
                       ('user_wallet', 'payout_hold', 'psp_clearing', 'fees', 'suspense', 'equity')),
    owner_id       text,
    currency       char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    slice          smallint NOT NULL DEFAULT 0 CHECK (slice >= 0),
    balance_minor  bigint NOT NULL DEFAULT 0,
    entry_count    bigint NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (code, currency, slice),
    UNIQUE (account_id, currency),  -- lets an entry's FK pin its currency to its account's
    CONSTRAINT account_owner_matches_kind CHECK ((kind IN ('user_wallet', 'payout_hold')) = (owner_id IS NOT NULL)),
    CONSTRAINT account_user_funds_never_negative CHECK (kind NOT IN ('user_wallet', 'payout_hold') OR balance_minor >= 0)
);
CREATE INDEX account_owner ON account (owner_id) WHERE owner_id IS NOT NULL;

CREATE TABLE ledger_transaction (
    transaction_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idempotency_key   text NOT NULL UNIQUE CHECK (idempotency_key <> '' AND length(idempotency_key) <= 200),
    kind              text NOT NULL CHECK (kind ~ '^[a-z_]{1,40}$'),
    payment_order_id  uuid,
    description       text NOT NULL DEFAULT '' CHECK (length(description) <= 500),
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_transaction_order ON ledger_transaction (payment_order_id) WHERE payment_order_id IS NOT NULL;

CREATE TABLE ledger_entry (
    entry_id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id       bigint NOT NULL REFERENCES ledger_transaction,
    account_id           bigint NOT NULL,
    currency             char(3) NOT NULL,
    -- Signed: a positive amount raises the account's balance, a negative one lowers it.
    amount_minor         bigint NOT NULL CHECK (amount_minor <> 0),
    -- The account's balance right after this entry: each balance change next to its cause.
    balance_after_minor  bigint NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (account_id, currency) REFERENCES account (account_id, currency)
);
CREATE INDEX ledger_entry_transaction ON ledger_entry (transaction_id);
CREATE INDEX ledger_entry_account ON ledger_entry (account_id, entry_id);

-- Balances move only here: the entry's insert updates its account's running balance under the
-- account's row lock (callers insert a transaction's entries in account-id order, so locks are
-- always taken in that order). SECURITY DEFINER because the app role has no UPDATE on account.
CREATE FUNCTION ledger_entry_apply() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    UPDATE account
       SET balance_minor = balance_minor + NEW.amount_minor,
           entry_count = entry_count + 1
     WHERE account_id = NEW.account_id
    RETURNING balance_minor INTO NEW.balance_after_minor;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ledger entry for unknown account %', NEW.account_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER ledger_entry_apply BEFORE INSERT ON ledger_entry
    FOR EACH ROW EXECUTE FUNCTION ledger_entry_apply();

-- Zero-sum per currency, checked at commit so a transaction's entries may be inserted in any
-- number of statements.
CREATE FUNCTION ledger_transaction_check_balanced() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
    bad record;
BEGIN
    SELECT currency, sum(amount_minor) AS total INTO bad
      FROM ledger_entry WHERE transaction_id = NEW.transaction_id
     GROUP BY currency HAVING sum(amount_minor) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger transaction % does not balance: % % off', NEW.transaction_id, bad.total, bad.currency
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_transaction_balanced';
    END IF;
    IF TG_TABLE_NAME = 'ledger_transaction'
       AND NOT EXISTS (SELECT 1 FROM ledger_entry WHERE transaction_id = NEW.transaction_id) THEN
        RAISE EXCEPTION 'ledger transaction % has no entries', NEW.transaction_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_transaction_balanced';
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER ledger_entry_balanced AFTER INSERT ON ledger_entry
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_transaction_check_balanced();
CREATE CONSTRAINT TRIGGER ledger_transaction_has_entries AFTER INSERT ON ledger_transaction
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_transaction_check_balanced();

-- Append-only, in the database itself: even the owner's code paths cannot rewrite history
-- without first dropping these triggers (which the app role cannot do).
CREATE FUNCTION forbid_rewrite() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER ledger_entry_append_only BEFORE UPDATE OR DELETE ON ledger_entry
    FOR EACH ROW EXECUTE FUNCTION forbid_rewrite();
CREATE TRIGGER ledger_entry_no_truncate BEFORE TRUNCATE ON ledger_entry
    FOR EACH STATEMENT EXECUTE FUNCTION forbid_rewrite();
CREATE TRIGGER ledger_transaction_append_only BEFORE UPDATE OR DELETE ON ledger_transaction
    FOR EACH ROW EXECUTE FUNCTION forbid_rewrite();
CREATE TRIGGER ledger_transaction_no_truncate BEFORE TRUNCATE ON ledger_transaction
    FOR EACH STATEMENT EXECUTE FUNCTION forbid_rewrite();

-- An account's identity never changes; only the entry trigger moves its balance.
CREATE FUNCTION account_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'accounts are never deleted' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (NEW.account_id, NEW.code, NEW.kind, NEW.owner_id, NEW.currency, NEW.slice)
       IS DISTINCT FROM (OLD.account_id, OLD.code, OLD.kind, OLD.owner_id, OLD.currency, OLD.slice) THEN
        RAISE EXCEPTION 'account % identity is immutable', OLD.account_id USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER account_guard BEFORE UPDATE OR DELETE ON account
    FOR EACH ROW EXECUTE FUNCTION account_guard();
CREATE TRIGGER account_no_truncate BEFORE TRUNCATE ON account
    FOR EACH STATEMENT EXECUTE FUNCTION forbid_rewrite();

-- The app role may insert an account's identity only: a new account starts at zero and the only
-- way to another balance is an entry.
GRANT SELECT ON account, ledger_transaction, ledger_entry TO {app_role};
GRANT INSERT (code, kind, owner_id, currency, slice) ON account TO {app_role};
GRANT INSERT (idempotency_key, kind, payment_order_id, description) ON ledger_transaction TO {app_role};
GRANT INSERT (transaction_id, account_id, currency, amount_minor) ON ledger_entry TO {app_role};
