-- The app role can no longer mint money (issue 6, item 2).
--
-- 1. A non-superuser owner role ({owner_role}, NOLOGIN, created by `paycell migrate`) owns every
--    table, sequence and function; migrations after this one run as it (SET LOCAL ROLE).
-- 2. Postings happen only through post_order(order_id, step), a SECURITY DEFINER function that
--    derives the legs (amount, currency, accounts) from a payment order in the state that
--    justifies the step. The app role loses INSERT on the ledger tables (it keeps SELECT).
-- 3. The app role may UPDATE only the order and request columns the steps set; a trigger
--    enforces the order state table (paycell/workflow.py) and freezes an order's money fields,
--    for the owner too; an order is born `requested`.
-- `{app_role}` and `{owner_role}` are replaced by the runner with the quoted role names.

-- -- 1. ownership --------------------------------------------------------------------------
GRANT USAGE, CREATE ON SCHEMA public TO {owner_role};
DO $$
DECLARE
    obj record;
BEGIN
    FOR obj IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')
                  AND c.relname <> 'schema_migration' LOOP
        EXECUTE format('ALTER TABLE public.%I OWNER TO {owner_role}', obj.relname);
    END LOOP;
    -- Identity sequences follow their table; any other sequence is handed over here.
    FOR obj IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'public' AND c.relkind = 'S'
                  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')) LOOP
        EXECUTE format('ALTER SEQUENCE public.%I OWNER TO {owner_role}', obj.relname);
    END LOOP;
    FOR obj IN SELECT p.oid::regprocedure AS sig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname = 'public' LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO {owner_role}', obj.sig);
    END LOOP;
END
$$;

-- -- 2. the order state table, in the database --------------------------------------------
-- One row per allowed move of payment_order.payment_order_status: the same (from, to) pairs as
-- paycell/workflow.py (ORDER_STATES, needs_attention from any live state, REOPENABLE), and
-- tests/test_order_guard.py fails when the two differ. `kinds` narrows a move to the order
-- kinds whose steps make it: only a transfer completes straight from `requested` (no PSP), only
-- a pay-in or pay-out goes through the psp_* states.
CREATE TABLE order_transition (
    from_state  text NOT NULL,
    to_state    text NOT NULL,
    kinds       text[] NOT NULL DEFAULT '{payin,payout,transfer}',
    PRIMARY KEY (from_state, to_state)
);
INSERT INTO order_transition (from_state, to_state, kinds) VALUES
    ('requested', 'psp_submitting', '{payin,payout}'), ('requested', 'completed', '{transfer}'),
    ('requested', 'failed', '{payin,payout,transfer}'),
    ('psp_submitting', 'psp_submitting', '{payin,payout}'), ('psp_submitting', 'psp_pending', '{payin,payout}'),
    ('psp_submitting', 'psp_succeeded', '{payin,payout}'), ('psp_submitting', 'completed', '{payin,payout}'),
    ('psp_submitting', 'failed', '{payin,payout}'),
    ('psp_pending', 'psp_pending', '{payin,payout}'), ('psp_pending', 'psp_succeeded', '{payin,payout}'),
    ('psp_pending', 'completed', '{payin,payout}'), ('psp_pending', 'failed', '{payin,payout}'),
    ('psp_succeeded', 'completed', '{payin,payout}'),
    ('requested', 'needs_attention', '{payin,payout,transfer}'),
    ('psp_submitting', 'needs_attention', '{payin,payout}'), ('psp_pending', 'needs_attention', '{payin,payout}'),
    ('psp_succeeded', 'needs_attention', '{payin,payout}'),
    ('needs_attention', 'requested', '{payin,payout,transfer}'),
    ('needs_attention', 'psp_submitting', '{payin,payout}'), ('needs_attention', 'psp_pending', '{payin,payout}'),
    ('needs_attention', 'psp_succeeded', '{payin,payout}');
ALTER TABLE order_transition OWNER TO {owner_role};
GRANT SELECT ON order_transition TO {app_role};

-- An order is born `requested` with nothing posted.
CREATE FUNCTION payment_order_born_requested() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'a payment order is inserted only in requested with nothing posted, got %',
        NEW.payment_order_status USING ERRCODE = 'check_violation', CONSTRAINT = 'payment_order_guard';
END
$$;
CREATE TRIGGER payment_order_born_requested BEFORE INSERT ON payment_order FOR EACH ROW
    WHEN (NEW.payment_order_status <> 'requested' OR NEW.ledger_updated OR NEW.wallet_updated)
    EXECUTE FUNCTION payment_order_born_requested();

-- The money fields of an order never change, and its state moves only along the table. The
-- WHEN clause keeps the common update (lease, attempt) free of any function call; a state
-- change costs one lookup of the (tiny, cached) transition table.
CREATE FUNCTION payment_order_guard() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    IF (NEW.payment_order_id, NEW.payment_id, NEW.user_id, NEW.kind, NEW.from_acct, NEW.to_acct,
        NEW.amount_minor, NEW.currency, NEW.created_at)
       IS DISTINCT FROM (OLD.payment_order_id, OLD.payment_id, OLD.user_id, OLD.kind, OLD.from_acct, OLD.to_acct,
                         OLD.amount_minor, OLD.currency, OLD.created_at) THEN
        RAISE EXCEPTION 'payment order %: amount, currency, accounts, kind, user and payment are frozen',
            OLD.payment_order_id USING ERRCODE = 'check_violation', CONSTRAINT = 'payment_order_guard';
    END IF;
    IF NEW.payment_order_status IS DISTINCT FROM OLD.payment_order_status
       AND NOT EXISTS (SELECT 1 FROM order_transition
                        WHERE from_state = OLD.payment_order_status AND to_state = NEW.payment_order_status
                          AND OLD.kind = ANY (kinds)) THEN
        RAISE EXCEPTION 'payment order % (%) cannot move from % to %',
            OLD.payment_order_id, OLD.kind, OLD.payment_order_status, NEW.payment_order_status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'payment_order_guard';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER payment_order_guard BEFORE UPDATE ON payment_order FOR EACH ROW
    WHEN ((NEW.payment_order_id, NEW.payment_id, NEW.user_id, NEW.kind, NEW.from_acct, NEW.to_acct,
           NEW.amount_minor, NEW.currency, NEW.created_at, NEW.payment_order_status)
          IS DISTINCT FROM (OLD.payment_order_id, OLD.payment_id, OLD.user_id, OLD.kind, OLD.from_acct, OLD.to_acct,
                            OLD.amount_minor, OLD.currency, OLD.created_at, OLD.payment_order_status))
    EXECUTE FUNCTION payment_order_guard();

CREATE FUNCTION payment_request_frozen() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'payment request %: amount, currency, accounts, kind and user are frozen', OLD.payment_id
        USING ERRCODE = 'check_violation', CONSTRAINT = 'payment_request_guard';
END
$$;
CREATE TRIGGER payment_request_frozen BEFORE UPDATE ON payment_request FOR EACH ROW
    WHEN ((NEW.payment_id, NEW.user_id, NEW.payment_option, NEW.kind, NEW.from_acct, NEW.to_acct,
           NEW.amount_minor, NEW.currency, NEW.created_at)
          IS DISTINCT FROM (OLD.payment_id, OLD.user_id, OLD.payment_option, OLD.kind, OLD.from_acct, OLD.to_acct,
                            OLD.amount_minor, OLD.currency, OLD.created_at))
    EXECUTE FUNCTION payment_request_frozen();

-- Only the columns the steps set (paycell/store/payments.py: _MOVE and _SETTABLE; the sweeper).
REVOKE UPDATE ON payment_order, payment_request FROM {app_role};
GRANT UPDATE (payment_order_status, updated_at, ledger_updated, wallet_updated, psp, psp_reference, attempt,
              lease_until, failure_code, last_error) ON payment_order TO {app_role};
GRANT UPDATE (status, is_complete, failure_code, updated_at) ON payment_request TO {app_role};

-- -- 3. accounts and postings, only through functions --------------------------------------
REVOKE INSERT ON account, ledger_transaction, ledger_entry FROM {app_role};

-- The ids of account `kind:name` in `currency` (a user's wallet or payout hold: one row; a
-- system account: its slices, in slice order), created at zero when missing. Any caller may
-- open an account: a new one holds nothing, and only post_order moves a balance.
CREATE FUNCTION ledger_account_ids(p_kind text, p_name text, p_currency text, p_slices integer)
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
    ELSIF p_kind IN ('psp_clearing', 'fees', 'suspense', 'equity') THEN
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
        -- ON CONFLICT waits for a concurrent creator; the next statement sees its rows.
        INSERT INTO account (code, kind, owner_id, currency, slice)
        SELECT v_code, p_kind, v_owner, p_currency, s FROM generate_series(0, v_slices - 1) AS s
        ON CONFLICT (code, currency, slice) DO NOTHING;
        SELECT array_agg(account_id ORDER BY slice) INTO v_ids
          FROM account WHERE code = v_code AND currency = p_currency;
    END IF;
    RETURN v_ids;
END
$$;

-- Post step `p_step` of order `p_order_id`, with legs derived from the order alone:
--   transfer  transfer order in requested:            wallet:<user>       -> wallet:<to_acct's user>
--   reserve   payout order in requested:              wallet:<user>       -> payout_hold:<user>
--   settle    payin order in a psp_* state:           psp_clearing:<psp>  -> wallet:<user>
--             payout order in a psp_* state, reserved: payout_hold:<user>  -> psp_clearing:<psp>
--   release   payout order in psp_submitting/pending, reserved, not settled:
--                                                     payout_hold:<user>  -> wallet:<user>
-- Idempotent by key `<order_id>:<step>`: a second call posts nothing and returns the first
-- posting (replayed = true), whatever the order's state by then. The order row is locked (the
-- steps hold that lock already; alone, in autocommit, this call takes it), so the state it
-- checks is the state the posting commits with. Entries go in account-id order (the lock
-- order). A generic plan is pinned: PL/pgSQL would otherwise re-plan its statements per call.
CREATE FUNCTION post_order(p_order_id uuid, p_step text, p_slices integer DEFAULT 32)
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
        WHEN 'settle' THEN o.kind IN ('payin', 'payout') AND o.status IN ('psp_submitting', 'psp_pending', 'psp_succeeded')
        WHEN 'release' THEN o.kind = 'payout' AND o.status IN ('psp_submitting', 'psp_pending')
        ELSE false END;
    IF v_ok AND o.kind = 'payout' AND p_step IN ('settle', 'release') THEN
        -- Spend the reserve once: by settling it or by releasing it, never both.
        v_ok := EXISTS (SELECT 1 FROM ledger_transaction t WHERE t.idempotency_key = p_order_id::text || ':reserve')
                AND NOT EXISTS (SELECT 1 FROM ledger_transaction t
                                 WHERE t.idempotency_key = p_order_id::text
                                       || CASE p_step WHEN 'settle' THEN ':release' ELSE ':settle' END);
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
    -- The hot clearing account is sliced; the slice comes from the key, so a retry of this
    -- posting lands on the same row and concurrent postings spread over all of them.
    IF p_slices IS NULL OR p_slices < 1 OR p_slices > 256 THEN
        RAISE EXCEPTION 'system account slices must be 1..256, got %', p_slices
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_posting_justified';
    END IF;
    v_slice := ((hashtext(v_key)::bigint % p_slices) + p_slices) % p_slices;
    d_code := CASE d_kind WHEN 'user_wallet' THEN 'wallet:' WHEN 'payout_hold' THEN 'payout_hold:'
                          ELSE 'psp_clearing:' END || d_name;
    c_code := CASE c_kind WHEN 'user_wallet' THEN 'wallet:' WHEN 'payout_hold' THEN 'payout_hold:'
                          ELSE 'psp_clearing:' END || c_name;
    d_slice := CASE d_kind WHEN 'psp_clearing' THEN v_slice ELSE 0 END;
    c_slice := CASE c_kind WHEN 'psp_clearing' THEN v_slice ELSE 0 END;
    -- One unique-index probe per account (measured ~15 % cheaper per posting than one
    -- statement fetching both through a BitmapOr); created (at zero) only when missing.
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

ALTER FUNCTION payment_order_born_requested() OWNER TO {owner_role};
ALTER FUNCTION payment_order_guard() OWNER TO {owner_role};
ALTER FUNCTION payment_request_frozen() OWNER TO {owner_role};
ALTER FUNCTION ledger_account_ids(text, text, text, integer) OWNER TO {owner_role};
ALTER FUNCTION post_order(uuid, text, integer) OWNER TO {owner_role};
-- Functions are executable by PUBLIC by default: only the app role may call these two.
REVOKE ALL ON FUNCTION ledger_account_ids(text, text, text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION post_order(uuid, text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledger_account_ids(text, text, text, integer) TO {app_role};
GRANT EXECUTE ON FUNCTION post_order(uuid, text, integer) TO {app_role};
