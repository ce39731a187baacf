-- Reversals and refunds (issue 13, first part). Runs as the owner role (migrations >= 0009);
-- `{app_role}` is replaced with its quoted name.
--
-- 1. payment_reversal: one row per reversal of a payment (a refund of a pay-in, the recall of a
--    pay-out), asked by an operator or by the reversal policy when a settlement posting failed
--    past its retries after the PSP moved the money. Its own states (paycell/workflow.py,
--    REVERSAL_STATES), its own idempotency key at the PSP (its reversal id), the operator's
--    Idempotency-Key unique per payment. A trigger checks, under the order's row lock, that the
--    reversal's currency is the order's, that the order is in a state that can be reversed, and
--    that the reversals not failed never exceed the order's amount: two concurrent reversals of
--    one payment queue on that lock and the second sees the first.
-- 2. The order states `reversing` (the policy reverses a payment whose settlement never posted;
--    its reversal row is live) and `reversed` (done), and the payment statuses a user sees.
-- 3. post_reversal: the compensating transaction of a succeeded reversal, derived from the
--    reversal and its order alone, never an edit:
--      pay-in settled      wallet:<user> (+ receivable:returns for what it cannot cover)
--                          -> psp_clearing:<psp>, the reversal's amount      kind payin_refund
--      pay-out settled     psp_clearing:<psp> -> wallet:<user>               kind payout_reversal
--      pay-out reserved, neither settled nor released (the policy path)
--                          payout_hold:<user> -> wallet:<user>, under the key of the release,
--                          so the reserve is spent once                      kind payout_release
--      pay-in never settled (the policy path): nothing was posted, nothing to compensate.

-- -- 1. the reversal --------------------------------------------------------------------------
CREATE TABLE payment_reversal (
    user_id           text NOT NULL,
    reversal_id       uuid NOT NULL,
    payment_id        uuid NOT NULL,
    payment_order_id  uuid NOT NULL,
    origin            text NOT NULL CHECK (origin IN ('operator', 'policy')),
    requested_by      text NOT NULL CHECK (length(requested_by) BETWEEN 1 AND 200),
    request_key       text CHECK (length(request_key) BETWEEN 1 AND 255),  -- the operator's Idempotency-Key
    request_sha256    bytea CHECK (length(request_sha256) = 32),
    amount_minor      bigint NOT NULL CHECK (amount_minor > 0),
    currency          char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    reason            text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    state             text NOT NULL DEFAULT 'requested'
                          CHECK (state IN ('requested', 'psp_submitting', 'succeeded', 'failed', 'needs_attention')),
    psp               text NOT NULL,
    psp_reference     text CHECK (length(psp_reference) <= 255),
    attempt           integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    lease_until       timestamptz,
    failure_code      text CHECK (length(failure_code) <= 100),
    last_error        text CHECK (length(last_error) <= 500),
    transaction_id    bigint,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, reversal_id),
    UNIQUE (user_id, payment_id, request_key),
    FOREIGN KEY (user_id, payment_id) REFERENCES payment_request (user_id, payment_id)
);
CREATE INDEX payment_reversal_order ON payment_reversal (user_id, payment_order_id);
-- The sweeper re-drives live reversals whose lease ran out.
CREATE INDEX payment_reversal_live ON payment_reversal (lease_until) WHERE state IN ('requested', 'psp_submitting');

CREATE FUNCTION payment_reversal_admitted() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
    o record;
    v_taken bigint;
BEGIN
    SELECT po.user_id, po.payment_id, po.kind, po.amount_minor, po.currency::text AS currency,
           po.payment_order_status AS status, po.psp
      INTO o FROM payment_order po WHERE po.payment_order_id = NEW.payment_order_id FOR UPDATE;
    IF NOT FOUND OR (o.user_id, o.payment_id) IS DISTINCT FROM (NEW.user_id, NEW.payment_id)
       OR o.psp IS DISTINCT FROM NEW.psp THEN
        RAISE EXCEPTION 'reversal %: not an order of payment % of user %', NEW.reversal_id, NEW.payment_id,
            NEW.user_id USING ERRCODE = 'check_violation', CONSTRAINT = 'payment_reversal_admitted';
    END IF;
    IF NEW.state <> 'requested' OR NEW.attempt <> 0 OR NEW.transaction_id IS NOT NULL THEN
        RAISE EXCEPTION 'a reversal is born requested with nothing sent or posted'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'payment_reversal_admitted';
    END IF;
    -- An operator reverses a completed payment; the policy one whose posting failed (reversing).
    IF o.kind NOT IN ('payin', 'payout')
       OR NOT (o.status = 'completed' OR (NEW.origin = 'policy' AND o.status = 'reversing')) THEN
        RAISE EXCEPTION 'reversal_state: order % (% in %) cannot be reversed', NEW.payment_order_id, o.kind, o.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'payment_reversal_admitted';
    END IF;
    IF NEW.currency::text <> o.currency THEN
        RAISE EXCEPTION 'reversal_currency: order % is in %, not %', NEW.payment_order_id, o.currency, NEW.currency
            USING ERRCODE = 'check_violation', CONSTRAINT = 'payment_reversal_admitted';
    END IF;
    SELECT coalesce(sum(r.amount_minor), 0) INTO v_taken FROM payment_reversal r
     WHERE r.user_id = NEW.user_id AND r.payment_order_id = NEW.payment_order_id AND r.state <> 'failed';
    IF v_taken + NEW.amount_minor > o.amount_minor THEN
        RAISE EXCEPTION 'reversal_amount: % of order % is reversed or being reversed; % more exceeds its %',
            v_taken, NEW.payment_order_id, NEW.amount_minor, o.amount_minor
            USING ERRCODE = 'check_violation', CONSTRAINT = 'payment_reversal_admitted';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER payment_reversal_admitted BEFORE INSERT ON payment_reversal
    FOR EACH ROW EXECUTE FUNCTION payment_reversal_admitted();

-- What a reversal is and asks never changes; its state moves along REVERSAL_STATES only; a
-- failed one never comes back (its amount was given back to what remains).
CREATE TABLE reversal_transition (
    from_state  text NOT NULL,
    to_state    text NOT NULL,
    PRIMARY KEY (from_state, to_state)
);
INSERT INTO reversal_transition (from_state, to_state) VALUES
    ('requested', 'psp_submitting'), ('requested', 'failed'), ('requested', 'needs_attention'),
    ('psp_submitting', 'psp_submitting'), ('psp_submitting', 'succeeded'), ('psp_submitting', 'failed'),
    ('psp_submitting', 'needs_attention'), ('needs_attention', 'psp_submitting');
GRANT SELECT ON reversal_transition TO {app_role};

CREATE FUNCTION payment_reversal_guard() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
BEGIN
    IF (NEW.user_id, NEW.reversal_id, NEW.payment_id, NEW.payment_order_id, NEW.origin, NEW.requested_by,
        NEW.request_key, NEW.request_sha256, NEW.amount_minor, NEW.currency, NEW.reason, NEW.psp, NEW.created_at)
       IS DISTINCT FROM (OLD.user_id, OLD.reversal_id, OLD.payment_id, OLD.payment_order_id, OLD.origin,
                         OLD.requested_by, OLD.request_key, OLD.request_sha256, OLD.amount_minor, OLD.currency,
                         OLD.reason, OLD.psp, OLD.created_at) THEN
        RAISE EXCEPTION 'reversal %: what it asks is frozen', OLD.reversal_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'payment_reversal_guard';
    END IF;
    IF NEW.state IS DISTINCT FROM OLD.state
       AND NOT EXISTS (SELECT 1 FROM reversal_transition WHERE from_state = OLD.state AND to_state = NEW.state) THEN
        RAISE EXCEPTION 'reversal % cannot move from % to %', OLD.reversal_id, OLD.state, NEW.state
            USING ERRCODE = 'check_violation', CONSTRAINT = 'payment_reversal_guard';
    END IF;
    IF OLD.transaction_id IS NOT NULL AND NEW.transaction_id IS DISTINCT FROM OLD.transaction_id THEN
        RAISE EXCEPTION 'reversal %: its posting is final', OLD.reversal_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'payment_reversal_guard';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER payment_reversal_guard BEFORE UPDATE ON payment_reversal
    FOR EACH ROW EXECUTE FUNCTION payment_reversal_guard();
CREATE TRIGGER payment_reversal_no_delete BEFORE DELETE ON payment_reversal
    FOR EACH ROW EXECUTE FUNCTION forbid_rewrite();
CREATE TRIGGER payment_reversal_no_truncate BEFORE TRUNCATE ON payment_reversal
    FOR EACH STATEMENT EXECUTE FUNCTION forbid_rewrite();

GRANT SELECT, INSERT ON payment_reversal TO {app_role};
GRANT UPDATE (state, psp_reference, attempt, lease_until, failure_code, last_error, updated_at)
    ON payment_reversal TO {app_role};  -- transaction_id: only post_reversal sets it

-- -- 2. order states and payment statuses ----------------------------------------------------
INSERT INTO order_transition (from_state, to_state, kinds) VALUES
    ('psp_succeeded', 'reversing', '{payin,payout}'),
    ('reversing', 'reversed', '{payin,payout}'),
    ('reversing', 'needs_attention', '{payin,payout}'),
    ('needs_attention', 'reversing', '{payin,payout}');  -- its reversal's dead letter replayed

ALTER TABLE payment_request DROP CONSTRAINT payment_request_status_check,
    ADD CONSTRAINT payment_request_status_check
        CHECK (status IN ('processing', 'requires_action', 'succeeded', 'returned', 'failed', 'needs_attention',
                          'reversing', 'reversed', 'partially_refunded', 'refunded'));

-- `reversing` and `reversed` have no step of the order's own: the sweeper's index leaves them out.
DROP INDEX payment_order_live;
CREATE INDEX payment_order_live ON payment_order (lease_until)
    WHERE payment_order_status NOT IN ('completed', 'failed', 'needs_attention', 'returned', 'reversing', 'reversed');

-- -- 3. the compensating posting -------------------------------------------------------------
CREATE FUNCTION post_reversal(p_user_id text, p_reversal_id uuid, p_slices integer DEFAULT 32)
RETURNS TABLE (transaction_id bigint, replayed boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
#variable_conflict use_column
DECLARE
    r record;
    o record;
    v_key text;
    v_kind text;
    v_txn bigint;
    v_slice integer;
    v_clearing bigint;
    v_wallet bigint;
    v_hold bigint;
    v_receivable bigint;
    v_from_wallet bigint;
    v_settled boolean;
BEGIN
    SELECT rv.payment_order_id, rv.amount_minor, rv.currency::text AS currency, rv.state, rv.transaction_id
      INTO r FROM payment_reversal rv WHERE rv.user_id = p_user_id AND rv.reversal_id = p_reversal_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no reversal % of user %', p_reversal_id, left(p_user_id, 80)
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_posting_justified';
    END IF;
    IF r.transaction_id IS NOT NULL THEN
        RETURN QUERY SELECT r.transaction_id, true;
        RETURN;
    END IF;
    SELECT po.user_id, po.kind, po.amount_minor, po.currency::text AS currency, coalesce(po.psp, 'unknown') AS psp
      INTO o FROM payment_order po WHERE po.payment_order_id = r.payment_order_id FOR UPDATE;
    IF r.state <> 'psp_submitting' OR r.currency <> o.currency THEN
        RAISE EXCEPTION 'reversal % (%) does not justify a posting', p_reversal_id, r.state
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_posting_justified';
    END IF;
    IF p_slices IS NULL OR p_slices < 1 OR p_slices > 256 THEN
        RAISE EXCEPTION 'system account slices must be 1..256, got %', p_slices
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_posting_justified';
    END IF;
    v_settled := EXISTS (SELECT 1 FROM ledger_transaction t WHERE t.idempotency_key = r.payment_order_id::text || ':settle');
    IF v_settled THEN
        v_key := r.payment_order_id::text || ':reversal:' || p_reversal_id::text;
        v_kind := CASE o.kind WHEN 'payin' THEN 'payin_refund' ELSE 'payout_reversal' END;
    ELSIF o.kind = 'payout'
          AND EXISTS (SELECT 1 FROM ledger_transaction t WHERE t.idempotency_key = r.payment_order_id::text || ':reserve')
          AND NOT EXISTS (SELECT 1 FROM ledger_transaction t
                           WHERE t.idempotency_key = r.payment_order_id::text || ':release') THEN
        IF r.amount_minor <> o.amount_minor THEN
            RAISE EXCEPTION 'reversal % of an unsettled pay-out must be whole', p_reversal_id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_posting_justified';
        END IF;
        v_key := r.payment_order_id::text || ':release';
        v_kind := 'payout_release';
    ELSE
        RETURN;  -- nothing of this payment was posted: nothing to compensate
    END IF;
    v_slice := ((hashtext(v_key)::bigint % p_slices) + p_slices) % p_slices;
    INSERT INTO ledger_transaction AS t (idempotency_key, kind, payment_order_id, description)
    VALUES (v_key, v_kind, r.payment_order_id, 'reversal ' || p_reversal_id::text)
    RETURNING t.transaction_id INTO v_txn;
    v_wallet := (ledger_account_ids('user_wallet', o.user_id, o.currency, 1))[1];
    IF v_kind = 'payout_release' THEN
        v_hold := (ledger_account_ids('payout_hold', o.user_id, o.currency, 1))[1];
        INSERT INTO ledger_entry (transaction_id, account_id, currency, amount_minor)
        SELECT v_txn, l.account_id, o.currency, l.amount_minor
          FROM (VALUES (v_hold, -r.amount_minor), (v_wallet, r.amount_minor)) AS l(account_id, amount_minor)
         ORDER BY l.account_id;
    ELSIF v_kind = 'payout_reversal' THEN
        v_clearing := (ledger_account_ids('psp_clearing', o.psp, o.currency, p_slices))[1 + v_slice];
        INSERT INTO ledger_entry (transaction_id, account_id, currency, amount_minor)
        SELECT v_txn, l.account_id, o.currency, l.amount_minor
          FROM (VALUES (v_clearing, -r.amount_minor), (v_wallet, r.amount_minor)) AS l(account_id, amount_minor)
         ORDER BY l.account_id;
    ELSE
        v_clearing := (ledger_account_ids('psp_clearing', o.psp, o.currency, p_slices))[1 + v_slice];
        v_receivable := (ledger_account_ids('receivable', 'returns', o.currency, p_slices))[1 + v_slice];
        -- The ledger's lock order, then what the wallet holds: it pays what it can, the receivable the rest.
        PERFORM 1 FROM account a WHERE a.account_id IN (v_clearing, v_wallet, v_receivable)
          ORDER BY a.account_id FOR UPDATE;
        SELECT least(greatest(a.balance_minor, 0), r.amount_minor) INTO v_from_wallet
          FROM account a WHERE a.account_id = v_wallet;
        INSERT INTO ledger_entry (transaction_id, account_id, currency, amount_minor)
        SELECT v_txn, l.account_id, o.currency, l.amount_minor
          FROM (VALUES (v_clearing, r.amount_minor), (v_wallet, -v_from_wallet),
                       (v_receivable, v_from_wallet - r.amount_minor)) AS l(account_id, amount_minor)
         WHERE l.amount_minor <> 0
         ORDER BY l.account_id;
    END IF;
    UPDATE payment_reversal rv SET transaction_id = v_txn
     WHERE rv.user_id = p_user_id AND rv.reversal_id = p_reversal_id;
    RETURN QUERY SELECT v_txn, false;
END
$$;
REVOKE ALL ON FUNCTION post_reversal(text, uuid, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION post_reversal(text, uuid, integer) TO {app_role};

-- -- 4. what reversals took back, on the payment (the API's `refunded`, without a join) -----
ALTER TABLE payment_request ADD COLUMN reversed_minor bigint NOT NULL DEFAULT 0 CHECK (reversed_minor >= 0);
GRANT UPDATE (reversed_minor) ON payment_request TO {app_role};

-- -- 5. the inbox takes a provider's word on a reversal (Adyen's REFUND notification) --------
ALTER TABLE psp_event DROP CONSTRAINT psp_event_kind_check,
    ADD CONSTRAINT psp_event_kind_check CHECK (kind IN ('outcome', 'returned', 'approved', 'reversal', 'ignored'));
