-- Provider webhooks, payments that need the customer, and late returns (issue 7).
--
-- 1. psp_event: the webhook inbox. Every authentic event a provider delivers is stored once,
--    keyed (connector, event_id), before it is answered; the apply actor
--    (paycell/actors/apply_event.py) applies it through the order state table and marks it
--    applied in the same transaction. The app role inserts events and sets only the columns that
--    say what applying did; it never deletes one, and an applied event is final.
-- 2. requires_action: an order waits for the customer at the provider (PayPal approval, 3-D
--    Secure). The order keeps the provider's redirect URL and the time the customer has.
-- 3. returned: money the provider paid is taken back after success (ACH R-code, PayPal
--    REVERSED, a chargeback). post_order's new step `return` posts the compensating
--    transaction; what the user's wallet cannot cover is owed to `receivable:returns`.
-- Runs as the owner role (migrations >= 0009); `{app_role}` is replaced with its quoted name.

-- -- 1. the inbox ---------------------------------------------------------------------------
CREATE TABLE psp_event (
    connector         text NOT NULL CHECK (connector ~ '^[a-z][a-z0-9_]{0,39}$'),
    event_id          text NOT NULL CHECK (event_id <> '' AND length(event_id) <= 255),
    kind              text NOT NULL CHECK (kind IN ('outcome', 'returned', 'approved', 'ignored')),
    type              text NOT NULL CHECK (length(type) <= 200),
    -- How the event names its payment: paycell's order id when the provider echoes it back,
    -- else the provider's reference (looked up in payment_order (psp, psp_reference)).
    payment_order_id  uuid,
    psp_reference     text CHECK (length(psp_reference) <= 255),
    event             jsonb NOT NULL,          -- the parsed paycell.psp.base.WebhookEvent
    raw_body          bytea NOT NULL,          -- the delivery exactly as it arrived (the evidence)
    received_at       timestamptz NOT NULL DEFAULT now(),
    -- What applying did. Unapplied: `result` says why not yet (unmatched: no order carries it yet;
    -- mismatch: the order it names belongs to another connector or disagrees with it), and the
    -- sweeper sends it again at `retry_at` until `apply_attempts` reaches the setting's maximum.
    applied_at        timestamptz,
    applied_order_id  uuid,
    result            text CHECK (result IN ('applied', 'agrees', 'stale', 'contradiction', 'held', 'ignored',
                                             'unmatched', 'mismatch')),
    note              text CHECK (length(note) <= 500),
    apply_attempts    integer NOT NULL DEFAULT 0 CHECK (apply_attempts >= 0),
    retry_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connector, event_id),
    CONSTRAINT psp_event_applied_has_result CHECK (applied_at IS NULL OR result IS NOT NULL)
);
-- The sweeper's scan, and an operator's list, of events not applied yet.
CREATE INDEX psp_event_unapplied ON psp_event (retry_at) WHERE applied_at IS NULL;

-- An applied event is final: applying it again must find it applied.
CREATE FUNCTION psp_event_applied_is_final() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'psp event %/% was applied at %: it is final', OLD.connector, OLD.event_id, OLD.applied_at
        USING ERRCODE = 'check_violation', CONSTRAINT = 'psp_event_applied_is_final';
END
$$;
CREATE TRIGGER psp_event_applied_is_final BEFORE UPDATE ON psp_event FOR EACH ROW
    WHEN (OLD.applied_at IS NOT NULL) EXECUTE FUNCTION psp_event_applied_is_final();
CREATE TRIGGER psp_event_no_delete BEFORE DELETE ON psp_event
    FOR EACH ROW EXECUTE FUNCTION forbid_rewrite();
CREATE TRIGGER psp_event_no_truncate BEFORE TRUNCATE ON psp_event
    FOR EACH STATEMENT EXECUTE FUNCTION forbid_rewrite();

GRANT SELECT, INSERT ON psp_event TO {app_role};
GRANT UPDATE (applied_at, applied_order_id, result, note, apply_attempts, retry_at) ON psp_event TO {app_role};

-- Events that do not echo paycell's order id find it by the provider's reference.
CREATE INDEX payment_order_psp_reference ON payment_order (psp, psp_reference) WHERE psp_reference IS NOT NULL;

-- -- 2. requires_action and returned: columns, statuses, the state table ---------------------
ALTER TABLE payment_order ADD COLUMN action_url text CHECK (length(action_url) <= 2048),
                          ADD COLUMN action_expires_at timestamptz;
GRANT UPDATE (action_url, action_expires_at) ON payment_order TO {app_role};

ALTER TABLE payment_request DROP CONSTRAINT payment_request_status_check,
    ADD CONSTRAINT payment_request_status_check
        CHECK (status IN ('processing', 'requires_action', 'succeeded', 'returned', 'failed', 'needs_attention'));

-- The same moves as paycell/workflow.py (tests/test_order_guard.py compares them).
INSERT INTO order_transition (from_state, to_state, kinds) VALUES
    ('psp_submitting', 'requires_action', '{payin,payout}'), ('psp_pending', 'requires_action', '{payin,payout}'),
    ('requires_action', 'requires_action', '{payin,payout}'), ('requires_action', 'psp_pending', '{payin,payout}'),
    ('requires_action', 'psp_succeeded', '{payin,payout}'), ('requires_action', 'completed', '{payin,payout}'),
    ('requires_action', 'failed', '{payin,payout}'), ('requires_action', 'needs_attention', '{payin,payout}'),
    ('needs_attention', 'requires_action', '{payin,payout}'),
    -- A provider's word after the order ended: a late return, or a contradiction a human resolves.
    ('completed', 'returned', '{payin,payout}'), ('completed', 'needs_attention', '{payin,payout}'),
    ('failed', 'needs_attention', '{payin,payout}');

-- `returned` is terminal: the sweeper's index of live orders leaves it out.
DROP INDEX payment_order_live;
CREATE INDEX payment_order_live ON payment_order (lease_until)
    WHERE payment_order_status NOT IN ('completed', 'failed', 'needs_attention', 'returned');

-- -- 3. the receivable and the `return` posting ---------------------------------------------
ALTER TABLE account DROP CONSTRAINT account_kind_check,
    ADD CONSTRAINT account_kind_check CHECK (kind IN
        ('user_wallet', 'payout_hold', 'psp_clearing', 'fees', 'suspense', 'equity', 'receivable'));

CREATE OR REPLACE FUNCTION ledger_account_ids(p_kind text, p_name text, p_currency text, p_slices integer)
RETURNS bigint[]
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_code text;
    v_owner text;
    v_slices integer := p_slices;
    v_ids bigint[];
BEGIN
    IF p_kind IN ('user_wallet', 'payout_hold') THEN
        IF p_name !~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$' THEN
            RAISE EXCEPTION 'not a user id: %', left(p_name, 80)
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_posting_justified';
        END IF;
        v_code := CASE p_kind WHEN 'user_wallet' THEN 'wallet:' ELSE 'payout_hold:' END || p_name;
        v_owner := p_name;
        v_slices := 1;
    ELSIF p_kind IN ('psp_clearing', 'fees', 'suspense', 'equity', 'receivable') THEN
        v_code := CASE WHEN p_name = '' THEN p_kind ELSE p_kind || ':' || p_name END;
        IF p_slices IS NULL OR p_slices < 1 OR p_slices > 256 THEN
            RAISE EXCEPTION 'system account slices must be 1..256, got %', p_slices
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_posting_justified';
        END IF;
    ELSE
        RAISE EXCEPTION 'not an account kind: %', left(p_kind, 40)
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_posting_justified';
    END IF;
    SELECT array_agg(account_id ORDER BY slice) INTO v_ids
      FROM account WHERE code = v_code AND currency = p_currency;
    IF coalesce(cardinality(v_ids), 0) < v_slices THEN
        INSERT INTO account (code, kind, owner_id, currency, slice)
        SELECT v_code, p_kind, v_owner, p_currency, s FROM generate_series(0, v_slices - 1) AS s
        ON CONFLICT (code, currency, slice) DO NOTHING;
        SELECT array_agg(account_id ORDER BY slice) INTO v_ids
          FROM account WHERE code = v_code AND currency = p_currency;
    END IF;
    RETURN v_ids;
END
$$;

-- post_order as in 0008, with requires_action among the psp_* states and one more step:
--   return    payin order completed and settled:  psp_clearing:<psp> <- wallet:<user>, and what
--             the wallet cannot cover <- receivable:returns (the user owes it; never negative funds)
--             payout order completed and settled: psp_clearing:<psp> -> wallet:<user> (the money
--             came back)
-- Keyed `<order_id>:return`: a second delivery of the same return posts nothing. The caller moves
-- the order on (returned, or needs_attention when the receivable took a share) in its transaction.
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
        WHEN 'transfer' THEN o.kind = 'transfer' AND o.status = 'requested'
        WHEN 'reserve' THEN o.kind = 'payout' AND o.status = 'requested'
        WHEN 'settle' THEN o.kind IN ('payin', 'payout')
                           AND o.status IN ('psp_submitting', 'psp_pending', 'requires_action', 'psp_succeeded')
        WHEN 'release' THEN o.kind = 'payout' AND o.status IN ('psp_submitting', 'psp_pending', 'requires_action')
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
