-- Reconciliation (issue 10): runs and their reports, settlement files and their lines, the
-- inconsistencies found (breaks), and the two postings only reconciliation may make.
-- Runs as the owner role (migrations >= 0009); `{app_role}` is replaced with its quoted name.
--
-- Owners: every table here leads with `owner_id`, the review queue's reserved owner id outside
-- the user-id alphabet (`recon:<connector>`, `recon:internal`), so under Citus a run's rows are
-- colocated by connector and never mixed with a user's shard key by accident.
--
-- 1. recon_run: one reconciliation (hourly internal, or one settlement file), its report.
-- 2. recon_file: a settlement file, identified by its SHA-256: ingesting the same bytes again
--    finds the row and changes nothing.
-- 3. recon_line: each line of a file, (file, line number) its key, as parsed and classified.
-- 4. recon_break: each inconsistency found, once per (owner, kind, subject): a second run over
--    the same data finds the row and opens no second review item.
-- 5. review_item.subject_key / action_taken: a reconciliation item is unique per subject (its
--    break), and its resolution records what the operator did about it; the item's guard freezes
--    the subject key with the rest of its subject.
-- 6. post_settlement_fees: the provider's fees of a file's matched lines, one transaction per
--    currency, derived from the stored lines alone.
--    post_recon_release: the reserve of a pay-out that failed without releasing it, derived from
--    the order alone (failed, reserved, neither settled nor released).

CREATE TABLE recon_run (
    owner_id      text NOT NULL CHECK (owner_id ~ '^recon:[a-z][a-z0-9_]{0,39}$'),
    run_id        uuid NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('internal', 'settlement')),
    connector     text CHECK (connector ~ '^[a-z][a-z0-9_]{0,39}$'),
    file_sha256   bytea CHECK (length(file_sha256) = 32),
    period_start  timestamptz,
    period_end    timestamptz,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    lines         bigint NOT NULL DEFAULT 0 CHECK (lines >= 0),
    counts        jsonb NOT NULL DEFAULT '{}'::jsonb,   -- kind -> number found
    auto_fixed    integer NOT NULL DEFAULT 0 CHECK (auto_fixed >= 0),
    queued        integer NOT NULL DEFAULT 0 CHECK (queued >= 0),
    totals        jsonb NOT NULL DEFAULT '{}'::jsonb,   -- currency -> {matched_minor, fees_minor, lines}
    PRIMARY KEY (owner_id, run_id),
    CONSTRAINT recon_run_settlement_has_file CHECK ((kind = 'settlement') = (file_sha256 IS NOT NULL))
);
CREATE INDEX recon_run_recent ON recon_run (started_at DESC, run_id);

CREATE TABLE recon_file (
    owner_id      text NOT NULL CHECK (owner_id ~ '^recon:[a-z][a-z0-9_]{0,39}$'),
    file_sha256   bytea NOT NULL CHECK (length(file_sha256) = 32),
    connector     text NOT NULL,
    run_id        uuid NOT NULL,
    size_bytes    bigint NOT NULL CHECK (size_bytes >= 0),
    lines         bigint NOT NULL CHECK (lines >= 0),
    received_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner_id, file_sha256),
    FOREIGN KEY (owner_id, run_id) REFERENCES recon_run (owner_id, run_id)
);

-- `category` in paycell's words: payin, payout, return (chargeback, dispute, reversal),
-- return_reversal, refund, fee, transfer_out (the provider paying us out), other.
-- `outcome`: matched, a break kind (paycell/reconcile/catalogue.py), or not_a_payment.
CREATE TABLE recon_line (
    owner_id          text NOT NULL,
    file_sha256       bytea NOT NULL,
    line_no           integer NOT NULL CHECK (line_no > 0),
    category          text NOT NULL CHECK (category ~ '^[a-z_]{1,40}$'),
    psp_reference     text CHECK (length(psp_reference) <= 255),
    order_ref         text CHECK (length(order_ref) <= 255),
    payment_order_id  uuid,
    amount_minor      bigint NOT NULL CHECK (amount_minor >= 0),
    currency          char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    fee_minor         bigint NOT NULL DEFAULT 0,
    booked_at         timestamptz,
    outcome           text NOT NULL CHECK (outcome ~ '^[a-z_]{1,40}$'),
    PRIMARY KEY (owner_id, file_sha256, line_no),
    FOREIGN KEY (owner_id, file_sha256) REFERENCES recon_file (owner_id, file_sha256)
);
-- "Missing at the PSP" asks, per order, whether any file of its connector carried it.
CREATE INDEX recon_line_order ON recon_line (payment_order_id) WHERE payment_order_id IS NOT NULL;

CREATE TABLE recon_break (
    owner_id          text NOT NULL CHECK (owner_id ~ '^recon:[a-z][a-z0-9_]{0,39}$'),
    break_id          uuid NOT NULL,
    kind              text NOT NULL CHECK (kind ~ '^[a-z_]{1,40}$'),
    subject_key       text NOT NULL CHECK (subject_key <> '' AND length(subject_key) <= 300),
    run_id            uuid NOT NULL,
    payment_order_id  uuid,
    evidence          jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- found: classified, not acted on yet; fixed: the catalogue's fix was applied (fix says
    -- which, transaction_id its posting when it posted); queued: a review item was opened.
    disposition       text NOT NULL DEFAULT 'found' CHECK (disposition IN ('found', 'fixed', 'queued')),
    fix               text CHECK (length(fix) <= 200),
    transaction_id    bigint,
    review_id         uuid,
    created_at        timestamptz NOT NULL DEFAULT now(),
    settled_at        timestamptz,
    PRIMARY KEY (owner_id, break_id),
    CONSTRAINT recon_break_once UNIQUE (owner_id, kind, subject_key),
    FOREIGN KEY (owner_id, run_id) REFERENCES recon_run (owner_id, run_id),
    CONSTRAINT recon_break_disposition CHECK (
        CASE disposition WHEN 'found' THEN settled_at IS NULL AND review_id IS NULL
                         WHEN 'queued' THEN review_id IS NOT NULL AND settled_at IS NOT NULL
                         ELSE fix IS NOT NULL AND settled_at IS NOT NULL END)
);
CREATE INDEX recon_break_run ON recon_break (owner_id, run_id);
CREATE INDEX recon_break_pending ON recon_break (created_at) WHERE disposition = 'found';

-- A settled break is final; a file and its lines are never rewritten.
CREATE FUNCTION recon_break_guard() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
BEGIN
    IF OLD.disposition <> 'found' THEN
        RAISE EXCEPTION 'recon break % was % at %: it is final', OLD.break_id, OLD.disposition, OLD.settled_at
            USING ERRCODE = 'check_violation', CONSTRAINT = 'recon_break_guard';
    END IF;
    IF (NEW.owner_id, NEW.break_id, NEW.kind, NEW.subject_key, NEW.run_id, NEW.payment_order_id, NEW.evidence,
        NEW.created_at)
       IS DISTINCT FROM (OLD.owner_id, OLD.break_id, OLD.kind, OLD.subject_key, OLD.run_id, OLD.payment_order_id,
                         OLD.evidence, OLD.created_at) THEN
        RAISE EXCEPTION 'recon break %: its subject and evidence are frozen', OLD.break_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'recon_break_guard';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER recon_break_guard BEFORE UPDATE ON recon_break FOR EACH ROW EXECUTE FUNCTION recon_break_guard();
CREATE TRIGGER recon_break_no_delete BEFORE DELETE ON recon_break FOR EACH ROW EXECUTE FUNCTION forbid_rewrite();
CREATE TRIGGER recon_file_append_only BEFORE UPDATE OR DELETE ON recon_file
    FOR EACH ROW EXECUTE FUNCTION forbid_rewrite();
CREATE TRIGGER recon_line_append_only BEFORE UPDATE OR DELETE ON recon_line
    FOR EACH ROW EXECUTE FUNCTION forbid_rewrite();

GRANT SELECT, INSERT ON recon_run, recon_file, recon_line, recon_break TO {app_role};
GRANT UPDATE (period_start, period_end, finished_at, lines, counts, auto_fixed, queued, totals) ON recon_run TO {app_role};
GRANT UPDATE (disposition, fix, transaction_id, review_id, settled_at) ON recon_break TO {app_role};

-- -- 5. the review queue's reconciliation items ----------------------------------------------
ALTER TABLE review_item ADD COLUMN subject_key text CHECK (length(subject_key) <= 300),
                        ADD COLUMN action_taken text CHECK (length(action_taken) <= 200),
                        ADD CONSTRAINT review_item_one_per_subject UNIQUE (user_id, subject_key);
GRANT UPDATE (action_taken) ON review_item TO {app_role};

-- The guard of 0015, with the subject key among what never changes.
CREATE OR REPLACE FUNCTION review_item_guard() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
BEGIN
    IF OLD.state IN ('approved', 'declined', 'expired') THEN
        RAISE EXCEPTION 'review item % was resolved (%) at %: it is final', OLD.review_id, OLD.state, OLD.resolved_at
            USING ERRCODE = 'check_violation', CONSTRAINT = 'review_item_guard';
    END IF;
    IF (NEW.user_id, NEW.review_id, NEW.kind, NEW.payment_id, NEW.payment_order_id, NEW.reasons, NEW.evidence,
        NEW.expires_at, NEW.created_at, NEW.subject_key)
       IS DISTINCT FROM (OLD.user_id, OLD.review_id, OLD.kind, OLD.payment_id, OLD.payment_order_id, OLD.reasons,
                         OLD.evidence, OLD.expires_at, OLD.created_at, OLD.subject_key) THEN
        RAISE EXCEPTION 'review item %: its subject, evidence and expiry are frozen', OLD.review_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'review_item_guard';
    END IF;
    IF NEW.state = 'open' AND OLD.state <> 'open' THEN
        RAISE EXCEPTION 'review item %: cannot move from % back to open', OLD.review_id, OLD.state
            USING ERRCODE = 'check_violation', CONSTRAINT = 'review_item_guard';
    END IF;
    RETURN NEW;
END
$$;

-- -- 6. the postings -------------------------------------------------------------------------
-- The fees of file `p_sha256` of owner `recon:<psp>`: per currency, the sum of fee_minor over
-- its lines matched to a settled pay-in or pay-out of that connector, debited to fees:<psp> and
-- credited to psp_clearing:<psp> (the provider kept them: it owes that much less). Keyed
-- `settlement_fee:<psp>:<sha hex>:<currency>`: posting a file's fees twice posts nothing.
CREATE FUNCTION post_settlement_fees(p_owner text, p_sha256 bytea)
RETURNS TABLE (transaction_id bigint, currency text, fee_minor bigint, replayed boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
#variable_conflict use_column
DECLARE
    v_psp text := substring(p_owner FROM '^recon:([a-z][a-z0-9_]{0,39})$');
    f record;
    v_key text;
    v_txn bigint;
    v_clearing bigint;
    v_fees bigint;
BEGIN
    IF v_psp IS NULL OR v_psp = 'internal'
       OR NOT EXISTS (SELECT 1 FROM recon_file rf WHERE rf.owner_id = p_owner AND rf.file_sha256 = p_sha256) THEN
        RAISE EXCEPTION 'no settlement file % of %', encode(p_sha256, 'hex'), left(p_owner, 50)
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_posting_justified';
    END IF;
    FOR f IN
        SELECT l.currency::text AS currency, sum(l.fee_minor) AS total
          FROM recon_line l JOIN payment_order o ON o.payment_order_id = l.payment_order_id
         WHERE l.owner_id = p_owner AND l.file_sha256 = p_sha256 AND l.outcome = 'matched'
           AND l.category IN ('payin', 'payout') AND l.fee_minor > 0 AND l.fee_minor < o.amount_minor
           AND o.psp = v_psp AND o.currency = l.currency
           AND EXISTS (SELECT 1 FROM ledger_transaction s
                        WHERE s.idempotency_key = o.payment_order_id::text || ':settle')
         GROUP BY l.currency ORDER BY l.currency
    LOOP
        v_key := 'settlement_fee:' || v_psp || ':' || encode(p_sha256, 'hex') || ':' || f.currency;
        INSERT INTO ledger_transaction AS t (idempotency_key, kind, description)
        VALUES (v_key, 'settlement_fee', 'provider fees of settlement file ' || encode(p_sha256, 'hex'))
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING t.transaction_id INTO v_txn;
        IF v_txn IS NULL THEN
            SELECT t.transaction_id INTO v_txn FROM ledger_transaction t WHERE t.idempotency_key = v_key;
            RETURN QUERY SELECT v_txn, f.currency, f.total::bigint, true;
            CONTINUE;
        END IF;
        v_clearing := (ledger_account_ids('psp_clearing', v_psp, f.currency, 1))[1];
        v_fees := (ledger_account_ids('fees', v_psp, f.currency, 1))[1];
        INSERT INTO ledger_entry (transaction_id, account_id, currency, amount_minor)
        SELECT v_txn, l.account_id, f.currency, l.amount_minor
          FROM (VALUES (v_clearing, f.total), (v_fees, -f.total)) AS l(account_id, amount_minor)
         ORDER BY l.account_id;
        RETURN QUERY SELECT v_txn, f.currency, f.total::bigint, false;
    END LOOP;
END
$$;

-- The reserve of a failed pay-out nothing settled or released (a crash between the failure and
-- its release, or a failure recorded by hand): payout_hold:<user> -> wallet:<user>, the same legs
-- and key (`<order>:release`) as post_order's release, so it can never be released twice nor
-- after a settlement.
CREATE FUNCTION post_recon_release(p_order_id uuid)
RETURNS TABLE (transaction_id bigint, replayed boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
#variable_conflict use_column
DECLARE
    o record;
    v_key text := p_order_id::text || ':release';
    v_txn bigint;
    v_hold bigint;
    v_wallet bigint;
    v_found boolean;
BEGIN
    SELECT po.user_id, po.kind, po.amount_minor, po.currency::text AS currency, po.payment_order_status AS status
      INTO o FROM payment_order po WHERE po.payment_order_id = p_order_id FOR UPDATE;
    v_found := FOUND;
    SELECT t.transaction_id INTO v_txn FROM ledger_transaction t WHERE t.idempotency_key = v_key;
    IF FOUND THEN
        RETURN QUERY SELECT v_txn, true;
        RETURN;
    END IF;
    IF NOT v_found OR o.kind IS DISTINCT FROM 'payout' OR o.status IS DISTINCT FROM 'failed'
       OR NOT EXISTS (SELECT 1 FROM ledger_transaction t WHERE t.idempotency_key = p_order_id::text || ':reserve')
       OR EXISTS (SELECT 1 FROM ledger_transaction t WHERE t.idempotency_key = p_order_id::text || ':settle') THEN
        RAISE EXCEPTION 'payment order % does not justify a reconciliation release', p_order_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_posting_justified';
    END IF;
    v_hold := (ledger_account_ids('payout_hold', o.user_id, o.currency, 1))[1];
    v_wallet := (ledger_account_ids('user_wallet', o.user_id, o.currency, 1))[1];
    INSERT INTO ledger_transaction AS t (idempotency_key, kind, payment_order_id, description)
    VALUES (v_key, 'payout_release', p_order_id, 'reconciliation: reserve of a failed pay-out')
    RETURNING t.transaction_id INTO v_txn;
    INSERT INTO ledger_entry (transaction_id, account_id, currency, amount_minor)
    SELECT v_txn, l.account_id, o.currency, l.amount_minor
      FROM (VALUES (v_hold, -o.amount_minor), (v_wallet, o.amount_minor)) AS l(account_id, amount_minor)
     ORDER BY l.account_id;
    RETURN QUERY SELECT v_txn, false;
END
$$;

REVOKE ALL ON FUNCTION post_settlement_fees(text, bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION post_recon_release(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION post_settlement_fees(text, bytea) TO {app_role};
GRANT EXECUTE ON FUNCTION post_recon_release(uuid) TO {app_role};
