-- The review queue (issue 8): a payment the risk engine sends to `review` is parked for a human.
-- Runs as the owner role (migrations >= 0009); `{app_role}` is replaced with its quoted name.
--
-- 1. in_review: the order state of a parked payment (paycell/workflow.py). Reachable from
--    `requested` (the screen step, a pay-out reserved first); left for psp_submitting (a pay-in or
--    pay-out approved), completed (a transfer approved), failed (declined, or approved and then
--    refused: no connector, insufficient funds for a transfer) or needs_attention (the order's
--    deadline, retries exhausted). in_review -> in_review records an approval before the
--    `proceed` step moves the order on. post_order accepts a transfer posting and a pay-out's
--    release from in_review.
-- 2. review_item: one item per subject a human must decide on. Payments now; reconciliation (a
--    later issue) adds its own kinds: `kind` says what the subject is, payment_id and
--    payment_order_id name a payment subject (NULL for other kinds), `evidence` holds whatever
--    the deciding code saw (for a payment: the assessment's event data, paycell.risk.engine).
--    A reconciliation item about no user's payment (an unmatched settlement line) takes a
--    reserved owner id outside the user-id alphabet (e.g. `recon:<connector>`), so the shard key
--    still leads.

-- -- 1. the state table and the ledger -----------------------------------------------------
INSERT INTO order_transition (from_state, to_state, kinds) VALUES
    ('requested', 'in_review', '{payin,payout,transfer}'),
    ('in_review', 'in_review', '{payin,payout,transfer}'),
    ('in_review', 'psp_submitting', '{payin,payout}'),
    ('in_review', 'completed', '{transfer}'),
    ('in_review', 'failed', '{payin,payout,transfer}'),
    ('in_review', 'needs_attention', '{payin,payout,transfer}'),
    ('needs_attention', 'in_review', '{payin,payout,transfer}');

-- post_order as in 0012, with two states more:
--   transfer  also from in_review (a transfer approved by a reviewer posts then)
--   release   also from in_review (a pay-out reserved before it was parked, then declined)
CREATE OR REPLACE FUNCTION post_order(p_order_id uuid, p_step text, p_slices integer DEFAULT 32)
RETURNS TABLE (transaction_id bigint, entry_id bigint, account_id bigint, currency text,
               amount_minor bigint, balance_after_minor bigint, replayed boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
    o record;
    v_key text := p_order_id::text || ':' || p_step;
    v_ok boolean;
    v_debit bigint;
    v_credit bigint;
    v_txn bigint;
    v_payee text;
    v_slice integer;
    v_wallet bigint;
    v_receivable bigint;
    v_from_wallet bigint;
    d_kind text; d_name text; d_code text; d_slice integer;
    c_kind text; c_name text; c_code text; c_slice integer;
BEGIN
    SELECT po.user_id, po.kind, po.to_acct, po.amount_minor, po.currency::text AS currency,
           po.payment_order_status AS status, coalesce(po.psp, 'unknown') AS psp
      INTO o FROM payment_order po WHERE po.payment_order_id = p_order_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no payment order %', p_order_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_posting_justified';
    END IF;
    v_ok := CASE p_step
        WHEN 'transfer' THEN o.kind = 'transfer' AND o.status IN ('requested', 'in_review')
        WHEN 'reserve' THEN o.kind = 'payout' AND o.status = 'requested'
        WHEN 'settle' THEN o.kind IN ('payin', 'payout')
                           AND o.status IN ('psp_submitting', 'psp_pending', 'requires_action', 'psp_succeeded')
        WHEN 'release' THEN o.kind = 'payout'
                            AND o.status IN ('in_review', 'psp_submitting', 'psp_pending', 'requires_action')
        WHEN 'return' THEN o.kind IN ('payin', 'payout') AND o.status = 'completed'
        ELSE false END;
    IF v_ok AND o.kind = 'payout' AND p_step IN ('settle', 'release') THEN
        -- Spend the reserve once: by settling it or by releasing it, never both.
        v_ok := EXISTS (SELECT 1 FROM ledger_transaction t WHERE t.idempotency_key = p_order_id::text || ':reserve')
                AND NOT EXISTS (SELECT 1 FROM ledger_transaction t
                                 WHERE t.idempotency_key = p_order_id::text
                                       || CASE p_step WHEN 'settle' THEN ':release' ELSE ':settle' END);
    END IF;
    IF v_ok AND p_step = 'return' THEN
        -- Only money that was paid can be taken back.
        v_ok := EXISTS (SELECT 1 FROM ledger_transaction t WHERE t.idempotency_key = p_order_id::text || ':settle');
    END IF;
    IF NOT v_ok THEN
        SELECT t.transaction_id INTO v_txn FROM ledger_transaction t WHERE t.idempotency_key = v_key;
        IF FOUND THEN
            RETURN QUERY SELECT e.transaction_id, e.entry_id, e.account_id, e.currency::text, e.amount_minor,
                                e.balance_after_minor, true
                           FROM ledger_entry e WHERE e.transaction_id = v_txn ORDER BY e.entry_id;
            RETURN;
        END IF;
        RAISE EXCEPTION 'payment order % (% in %) does not justify a % posting', p_order_id, o.kind, o.status, p_step
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_posting_justified';
    END IF;
    IF p_slices IS NULL OR p_slices < 1 OR p_slices > 256 THEN
        RAISE EXCEPTION 'system account slices must be 1..256, got %', p_slices
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_posting_justified';
    END IF;
    v_slice := ((hashtext(v_key)::bigint % p_slices) + p_slices) % p_slices;

    IF p_step = 'return' THEN
        INSERT INTO ledger_transaction AS t (idempotency_key, kind, payment_order_id)
        VALUES (v_key, o.kind || '_return', p_order_id)
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING t.transaction_id INTO v_txn;
        IF v_txn IS NULL THEN
            RETURN QUERY SELECT e.transaction_id, e.entry_id, e.account_id, e.currency::text, e.amount_minor,
                                e.balance_after_minor, true
                           FROM ledger_transaction t JOIN ledger_entry e ON e.transaction_id = t.transaction_id
                          WHERE t.idempotency_key = v_key ORDER BY e.entry_id;
            RETURN;
        END IF;
        v_credit := (ledger_account_ids('psp_clearing', o.psp, o.currency, p_slices))[1 + v_slice];
        v_wallet := (ledger_account_ids('user_wallet', o.user_id, o.currency, 1))[1];
        IF o.kind = 'payout' THEN
            RETURN QUERY
            WITH legs AS (
                INSERT INTO ledger_entry AS e (transaction_id, account_id, currency, amount_minor)
                SELECT v_txn, l.account_id, o.currency, l.amount_minor
                  FROM (VALUES (v_credit, -o.amount_minor), (v_wallet, o.amount_minor)) AS l(account_id, amount_minor)
                 ORDER BY l.account_id
                RETURNING e.transaction_id, e.entry_id, e.account_id, e.currency::text, e.amount_minor,
                          e.balance_after_minor, false
            )
            SELECT * FROM legs;
            RETURN;
        END IF;
        v_receivable := (ledger_account_ids('receivable', 'returns', o.currency, p_slices))[1 + v_slice];
        -- Lock every account this posting touches in id order (the ledger's lock order), then
        -- read what the wallet holds: it pays what it can, the receivable the rest.
        PERFORM 1 FROM account a WHERE a.account_id IN (v_credit, v_wallet, v_receivable)
          ORDER BY a.account_id FOR UPDATE;
        SELECT least(greatest(a.balance_minor, 0), o.amount_minor) INTO v_from_wallet
          FROM account a WHERE a.account_id = v_wallet;
        RETURN QUERY
        WITH legs AS (
            INSERT INTO ledger_entry AS e (transaction_id, account_id, currency, amount_minor)
            SELECT v_txn, l.account_id, o.currency, l.amount_minor
              FROM (VALUES (v_credit, o.amount_minor), (v_wallet, -v_from_wallet),
                           (v_receivable, v_from_wallet - o.amount_minor)) AS l(account_id, amount_minor)
             WHERE l.amount_minor <> 0
             ORDER BY l.account_id
            RETURNING e.transaction_id, e.entry_id, e.account_id, e.currency::text, e.amount_minor,
                      e.balance_after_minor, false
        )
        SELECT * FROM legs;
        RETURN;
    END IF;

    IF p_step = 'transfer' THEN
        v_payee := substring(o.to_acct FROM '^wallet:([A-Za-z0-9][A-Za-z0-9_.-]{0,63})$');
        IF v_payee IS NULL OR v_payee = o.user_id THEN
            RAISE EXCEPTION 'payment order %: % is not another user''s wallet', p_order_id, left(o.to_acct, 80)
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_posting_justified';
        END IF;
        d_kind := 'user_wallet'; d_name := o.user_id; c_kind := 'user_wallet'; c_name := v_payee;
    ELSIF p_step = 'reserve' THEN
        d_kind := 'user_wallet'; d_name := o.user_id; c_kind := 'payout_hold'; c_name := o.user_id;
    ELSIF p_step = 'release' THEN
        d_kind := 'payout_hold'; d_name := o.user_id; c_kind := 'user_wallet'; c_name := o.user_id;
    ELSIF o.kind = 'payin' THEN
        d_kind := 'psp_clearing'; d_name := o.psp; c_kind := 'user_wallet'; c_name := o.user_id;
    ELSE
        d_kind := 'payout_hold'; d_name := o.user_id; c_kind := 'psp_clearing'; c_name := o.psp;
    END IF;
    d_code := CASE d_kind WHEN 'user_wallet' THEN 'wallet:' WHEN 'payout_hold' THEN 'payout_hold:'
                          ELSE 'psp_clearing:' END || d_name;
    c_code := CASE c_kind WHEN 'user_wallet' THEN 'wallet:' WHEN 'payout_hold' THEN 'payout_hold:'
                          ELSE 'psp_clearing:' END || c_name;
    d_slice := CASE d_kind WHEN 'psp_clearing' THEN v_slice ELSE 0 END;
    c_slice := CASE c_kind WHEN 'psp_clearing' THEN v_slice ELSE 0 END;
    SELECT a.account_id INTO v_debit FROM account a
     WHERE a.code = d_code AND a.currency = o.currency AND a.slice = d_slice;
    SELECT a.account_id INTO v_credit FROM account a
     WHERE a.code = c_code AND a.currency = o.currency AND a.slice = c_slice;
    IF v_debit IS NULL THEN
        v_debit := (ledger_account_ids(d_kind, d_name, o.currency, p_slices))[1 + d_slice];
    END IF;
    IF v_credit IS NULL THEN
        v_credit := (ledger_account_ids(c_kind, c_name, o.currency, p_slices))[1 + c_slice];
    END IF;

    INSERT INTO ledger_transaction AS t (idempotency_key, kind, payment_order_id)
    VALUES (v_key, o.kind || '_' || p_step, p_order_id)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING t.transaction_id INTO v_txn;
    IF v_txn IS NULL THEN  -- posted before (a concurrent caller committed it meanwhile)
        RETURN QUERY SELECT e.transaction_id, e.entry_id, e.account_id, e.currency::text, e.amount_minor,
                            e.balance_after_minor, true
                       FROM ledger_transaction t JOIN ledger_entry e ON e.transaction_id = t.transaction_id
                      WHERE t.idempotency_key = v_key ORDER BY e.entry_id;
        RETURN;
    END IF;
    RETURN QUERY
    WITH legs AS (
        INSERT INTO ledger_entry AS e (transaction_id, account_id, currency, amount_minor)
        SELECT v_txn, l.account_id, o.currency, l.amount_minor
          FROM (VALUES (v_debit, -o.amount_minor), (v_credit, o.amount_minor)) AS l(account_id, amount_minor)
         ORDER BY l.account_id
        RETURNING e.transaction_id, e.entry_id, e.account_id, e.currency::text, e.amount_minor,
                  e.balance_after_minor, false
    )
    SELECT * FROM legs;
END
$$;

-- -- 2. review_item --------------------------------------------------------------------------
-- State: open -> claimed -> approved | declined | expired (open may be resolved unclaimed, and
-- an item claimed by one operator may be claimed again, by them or, once their claim has lapsed
-- (PAYCELL_REVIEW_CLAIM_S), by another). A resolved item is final: no column of it changes again.
-- `outcome` is what resolving did to the subject (approve or decline): the state for a human's
-- decision, the configured policy for an expired item (resolved_by `system:expiry`).
CREATE TABLE review_item (
    user_id           text NOT NULL,
    review_id         uuid NOT NULL,
    kind              text NOT NULL CHECK (kind ~ '^[a-z][a-z_]{0,39}$'),
    payment_id        uuid,
    payment_order_id  uuid,
    reasons           text[] NOT NULL DEFAULT '{}',
    evidence          jsonb NOT NULL DEFAULT '{}'::jsonb,
    state             text NOT NULL DEFAULT 'open'
                          CHECK (state IN ('open', 'claimed', 'approved', 'declined', 'expired')),
    claimed_by        text CHECK (length(claimed_by) <= 200),
    claimed_at        timestamptz,
    resolved_by       text CHECK (length(resolved_by) <= 200),
    resolved_at       timestamptz,
    outcome           text CHECK (outcome IN ('approve', 'decline')),
    note              text CHECK (length(note) <= 2000),
    expires_at        timestamptz NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, review_id),                          -- the shard key leads
    -- A payment is reviewed once: a redelivered screen message cannot open a second item.
    -- (NULLs are distinct: other kinds bring their own subject keys.)
    CONSTRAINT review_item_one_per_order UNIQUE (user_id, payment_order_id),
    FOREIGN KEY (user_id, payment_id) REFERENCES payment_request (user_id, payment_id),
    CONSTRAINT review_item_payment_subject CHECK (kind <> 'payment'
                                                  OR (payment_id IS NOT NULL AND payment_order_id IS NOT NULL)),
    CONSTRAINT review_item_claim CHECK ((claimed_by IS NULL) = (claimed_at IS NULL)
                                        AND (state <> 'claimed' OR claimed_by IS NOT NULL)),
    CONSTRAINT review_item_resolution CHECK (
        CASE WHEN state IN ('approved', 'declined', 'expired')
             THEN resolved_by IS NOT NULL AND resolved_at IS NOT NULL AND outcome IS NOT NULL
                  AND (state = 'expired' OR outcome = left(state, -1))   -- approved -> approve
             ELSE resolved_by IS NULL AND resolved_at IS NULL AND outcome IS NULL AND note IS NULL END)
);
-- The operators' queue: items in a state, oldest first (keyset-paginated on (created_at,
-- review_id)). A cross-user listing: under Citus it is a fan-out to every shard, merged by the
-- coordinator; acceptable for an operator's low-volume query (reference-style). Every write
-- names (user_id, review_id) and routes to one shard.
CREATE INDEX review_item_queue ON review_item (state, created_at, review_id);
-- The API addresses an item by its review_id alone (paycell/reviews.py says why); this index
-- finds its user_id (a fan-out probe under Citus, then single-shard work).
CREATE INDEX review_item_by_id ON review_item (review_id);
-- The expiry actor's scan of unresolved items past their expiry.
CREATE INDEX review_item_expiring ON review_item (expires_at) WHERE state IN ('open', 'claimed');

-- An item is born open and unclaimed.
CREATE FUNCTION review_item_born_open() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'a review item is inserted only open and unclaimed, got %', NEW.state
        USING ERRCODE = 'check_violation', CONSTRAINT = 'review_item_guard';
END
$$;
CREATE TRIGGER review_item_born_open BEFORE INSERT ON review_item FOR EACH ROW
    WHEN (NEW.state <> 'open' OR NEW.claimed_by IS NOT NULL OR NEW.resolved_by IS NOT NULL)
    EXECUTE FUNCTION review_item_born_open();

-- Its subject and evidence never change; its state moves only forward; resolved is final. For
-- the owner too (the app role's column grants already keep it to the state, claim and resolution).
CREATE FUNCTION review_item_guard() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
BEGIN
    IF OLD.state IN ('approved', 'declined', 'expired') THEN
        RAISE EXCEPTION 'review item % was resolved (%) at %: it is final', OLD.review_id, OLD.state, OLD.resolved_at
            USING ERRCODE = 'check_violation', CONSTRAINT = 'review_item_guard';
    END IF;
    IF (NEW.user_id, NEW.review_id, NEW.kind, NEW.payment_id, NEW.payment_order_id, NEW.reasons, NEW.evidence,
        NEW.expires_at, NEW.created_at)
       IS DISTINCT FROM (OLD.user_id, OLD.review_id, OLD.kind, OLD.payment_id, OLD.payment_order_id, OLD.reasons,
                         OLD.evidence, OLD.expires_at, OLD.created_at) THEN
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
CREATE TRIGGER review_item_guard BEFORE UPDATE ON review_item
    FOR EACH ROW EXECUTE FUNCTION review_item_guard();
CREATE TRIGGER review_item_no_delete BEFORE DELETE ON review_item
    FOR EACH ROW EXECUTE FUNCTION forbid_rewrite();
CREATE TRIGGER review_item_no_truncate BEFORE TRUNCATE ON review_item
    FOR EACH STATEMENT EXECUTE FUNCTION forbid_rewrite();

GRANT SELECT, INSERT ON review_item TO {app_role};
GRANT UPDATE (state, claimed_by, claimed_at, resolved_by, resolved_at, outcome, note) ON review_item TO {app_role};
