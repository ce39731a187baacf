-- The ledger's and the event log's keys carry the user (issue 12; docs/scale.md): `account`,
-- `ledger_transaction`, `ledger_entry` and `event` meet Citus's rules for tables distributed by
-- `user_id` (the distribution column in the primary key and in every unique constraint). Runs as
-- the owner role (migrations >= 0009); `{app_role}` is replaced with its quoted name. Existing
-- rows are converted in place.
--
-- 1. account.user_id: a user's wallet and payout hold carry their owner; a SYSTEM account
--    (clearing, fees, suspense, equity, receivable), split into slices to spread its hot rows,
--    carries its slice's owner key `system:<slice>` (a colon: no user id can be it, user ids match
--    ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$). A posting for user U uses slice hashtext(U) mod slices,
--    so a user's postings always touch the same slice (on Citus each slice's owner key is chosen
--    to hash onto one shard and U's slice is the one on U's shard; that choice replaces the
--    `system:<slice>` rule of the check below by a later migration). Keys: (user_id, account_id);
--    (user_id, code, currency) unique, which with the check is the old (code, currency, slice).
--    The unique (account_id, currency) served the entry's foreign key that 0007 dropped; the
--    index on owner_id is the primary key's prefix now. Both go.
-- 2. ledger_entry.user_id: its account's (an entry lives with the balance it moves). Key
--    (entry_id, user_id). No foreign key to account: the entry trigger already finds the account
--    by (user_id, account_id, currency) to move its balance and refuses an entry when there is none
--    (0007: a foreign key would be a second lookup of the same row per entry).
-- 3. ledger_transaction.user_id: the user of the order that posted it; a posting with no order
--    (a settlement file's fees) belongs to slice 0's owner, `system:0`, as do its accounts' slices.
--    The user of a key is a function of the key's order (frozen) or fixed, so idempotency per
--    (user_id, idempotency_key) is as strong as it was per key. Key (transaction_id, user_id).
-- 4. event: key (event_id, user_id).
--
-- The new primary keys put the id first: the id still finds its row alone (the entry trigger
-- finds its transaction by id: an entry's account may belong to another user than the
-- transaction, the payee of a transfer or a system slice), and rows append at the right edge of
-- the index as before instead of scattering over it by user. Citus asks for the column in the
-- key, not for its place.
--
-- post_order and post_recon_release take the user (and select the order by user and id);
-- post_reversal already did. Their former signatures stay for one release as thin wrappers that
-- read the order's user, for processes of the previous release still running during a deploy.

-- -- 1. account ----------------------------------------------------------------------------
ALTER TABLE account ADD COLUMN user_id text;
UPDATE account SET user_id = CASE WHEN kind IN ('user_wallet', 'payout_hold') THEN owner_id ELSE 'system:' || slice END;
ALTER TABLE account
    ALTER COLUMN user_id SET NOT NULL,
    DROP CONSTRAINT account_pkey,
    DROP CONSTRAINT account_account_id_currency_key,
    DROP CONSTRAINT account_code_currency_slice_key,
    ADD CONSTRAINT account_pkey PRIMARY KEY (user_id, account_id),
    ADD CONSTRAINT account_user_code_currency_key UNIQUE (user_id, code, currency),
    ADD CONSTRAINT account_user_is_owner_or_slice CHECK (CASE WHEN kind IN ('user_wallet', 'payout_hold')
                                                              THEN user_id = owner_id AND slice = 0
                                                              ELSE user_id = 'system:' || slice END);
DROP INDEX account_owner;

-- -- 2. ledger_transaction -------------------------------------------------------------------
ALTER TABLE ledger_transaction ADD COLUMN user_id text;
ALTER TABLE ledger_transaction DISABLE TRIGGER ledger_transaction_append_only;
UPDATE ledger_transaction t
   SET user_id = coalesce((SELECT o.user_id FROM payment_order o WHERE o.payment_order_id = t.payment_order_id),
                          'system:0');
ALTER TABLE ledger_transaction ENABLE TRIGGER ledger_transaction_append_only;
ALTER TABLE ledger_transaction
    ALTER COLUMN user_id SET NOT NULL,
    DROP CONSTRAINT ledger_transaction_pkey,
    DROP CONSTRAINT ledger_transaction_idempotency_key_key,
    ADD CONSTRAINT ledger_transaction_pkey PRIMARY KEY (transaction_id, user_id),
    ADD CONSTRAINT ledger_transaction_user_idempotency_key_key UNIQUE (user_id, idempotency_key);

-- -- 3. ledger_entry -------------------------------------------------------------------------
ALTER TABLE ledger_entry ADD COLUMN user_id text;
ALTER TABLE ledger_entry DISABLE TRIGGER ledger_entry_append_only;
UPDATE ledger_entry e SET user_id = a.user_id FROM account a WHERE a.account_id = e.account_id;
ALTER TABLE ledger_entry ENABLE TRIGGER ledger_entry_append_only;
ALTER TABLE ledger_entry
    ALTER COLUMN user_id SET NOT NULL,
    DROP CONSTRAINT ledger_entry_pkey,
    ADD CONSTRAINT ledger_entry_pkey PRIMARY KEY (entry_id, user_id);

-- -- 4. event --------------------------------------------------------------------------------
ALTER TABLE event DROP CONSTRAINT event_pkey, ADD CONSTRAINT event_pkey PRIMARY KEY (event_id, user_id);

-- -- 5. the guards ---------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION account_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'accounts are never deleted' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (NEW.account_id, NEW.user_id, NEW.code, NEW.kind, NEW.owner_id, NEW.currency, NEW.slice, NEW.created_at)
       IS DISTINCT FROM (OLD.account_id, OLD.user_id, OLD.code, OLD.kind, OLD.owner_id, OLD.currency, OLD.slice,
                         OLD.created_at) THEN
        RAISE EXCEPTION 'account % identity is immutable', OLD.account_id USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (NEW.balance_minor, NEW.entry_count) IS DISTINCT FROM (OLD.balance_minor, OLD.entry_count)
       AND pg_trigger_depth() < 2 THEN
        RAISE EXCEPTION 'account % balance moves only through ledger entries', OLD.account_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;

-- The entry names its account by (user_id, account_id): the primary key finds it.
CREATE OR REPLACE FUNCTION ledger_entry_apply() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM 1 FROM ledger_transaction
      WHERE transaction_id = NEW.transaction_id AND created_xid = pg_current_xact_id();
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ledger entry for transaction %: entries join only a transaction created in the same database transaction',
            NEW.transaction_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    UPDATE account
       SET balance_minor = balance_minor + NEW.amount_minor,
           entry_count = entry_count + 1
     WHERE user_id = NEW.user_id AND account_id = NEW.account_id AND currency = NEW.currency
    RETURNING balance_minor INTO NEW.balance_after_minor;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ledger entry for account % of % in %: no such account in that currency', NEW.account_id,
            left(NEW.user_id, 80), NEW.currency USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END
$$;

-- -- 6. accounts -----------------------------------------------------------------------------
-- The ids of account `kind:name` in `currency` (a user's wallet or payout hold: one row; a
-- system account: slices 0..p_slices-1, in slice order, slice s owned by `system:<s>`), created
-- at zero when missing.
CREATE OR REPLACE FUNCTION ledger_account_ids(p_kind text, p_name text, p_currency text, p_slices integer)
RETURNS bigint[]
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_code text;
    v_owners text[];
    v_ids bigint[];
BEGIN
    IF p_kind IN ('user_wallet', 'payout_hold') THEN
        IF p_name !~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$' THEN
            RAISE EXCEPTION 'not a user id: %', left(p_name, 80)
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_posting_justified';
        END IF;
        v_code := CASE p_kind WHEN 'user_wallet' THEN 'wallet:' ELSE 'payout_hold:' END || p_name;
        v_owners := ARRAY[p_name];
    ELSIF p_kind IN ('psp_clearing', 'fees', 'suspense', 'equity', 'receivable') THEN
        v_code := CASE WHEN p_name = '' THEN p_kind ELSE p_kind || ':' || p_name END;
        IF p_slices IS NULL OR p_slices < 1 OR p_slices > 256 THEN
            RAISE EXCEPTION 'system account slices must be 1..256, got %', p_slices
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_posting_justified';
        END IF;
        v_owners := ARRAY(SELECT 'system:' || s FROM generate_series(0, p_slices - 1) AS s);
    ELSE
        RAISE EXCEPTION 'not an account kind: %', left(p_kind, 40)
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_posting_justified';
    END IF;
    SELECT array_agg(account_id ORDER BY slice) INTO v_ids
      FROM account WHERE user_id = ANY (v_owners) AND code = v_code AND currency = p_currency;
    IF coalesce(cardinality(v_ids), 0) < cardinality(v_owners) THEN
        -- ON CONFLICT waits for a concurrent creator; the next statement sees its rows.
        INSERT INTO account (user_id, code, kind, owner_id, currency, slice)
        SELECT o.owner, v_code, p_kind, CASE WHEN p_kind IN ('user_wallet', 'payout_hold') THEN p_name END,
               p_currency, o.n - 1
          FROM unnest(v_owners) WITH ORDINALITY AS o(owner, n)
        ON CONFLICT (user_id, code, currency) DO NOTHING;
        SELECT array_agg(account_id ORDER BY slice) INTO v_ids
          FROM account WHERE user_id = ANY (v_owners) AND code = v_code AND currency = p_currency;
    END IF;
    RETURN v_ids;
END
$$;

-- -- 7. post_order ---------------------------------------------------------------------------
-- As before (0008, 0012, 0015, 0024: the legs derived from the order alone, idempotent by
-- `<order_id>:<step>`), for the order (p_user_id, p_order_id). The system slice is the user's:
-- hashtext(user) mod p_slices, owner `system:<slice>`.
CREATE FUNCTION post_order(p_user_id text, p_order_id uuid, p_step text, p_slices integer DEFAULT 32)
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
    v_system text;
    v_wallet bigint;
    v_receivable bigint;
    v_from_wallet bigint;
    d_kind text; d_name text; d_code text; d_user text;
    c_kind text; c_name text; c_code text; c_user text;
BEGIN
    SELECT po.user_id, po.kind, po.to_acct, po.amount_minor, po.currency::text AS currency,
           po.payment_order_status AS status, coalesce(po.psp, 'unknown') AS psp
      INTO o FROM payment_order po WHERE po.user_id = p_user_id AND po.payment_order_id = p_order_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no payment order % of user %', p_order_id, left(p_user_id, 80)
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
        v_ok := EXISTS (SELECT 1 FROM ledger_transaction t
                         WHERE t.user_id = p_user_id AND t.idempotency_key = p_order_id::text || ':reserve')
                AND NOT EXISTS (SELECT 1 FROM ledger_transaction t
                                 WHERE t.user_id = p_user_id
                                   AND t.idempotency_key = p_order_id::text
                                       || CASE p_step WHEN 'settle' THEN ':release' ELSE ':settle' END);
    END IF;
    IF v_ok AND p_step = 'return' THEN
        -- Only money that was paid can be taken back.
        v_ok := EXISTS (SELECT 1 FROM ledger_transaction t
                         WHERE t.user_id = p_user_id AND t.idempotency_key = p_order_id::text || ':settle');
    END IF;
    IF NOT v_ok THEN
        SELECT t.transaction_id INTO v_txn FROM ledger_transaction t
         WHERE t.user_id = p_user_id AND t.idempotency_key = v_key;
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
    v_slice := ((hashtext(p_user_id)::bigint % p_slices) + p_slices) % p_slices;
    v_system := 'system:' || v_slice;

    IF p_step = 'return' THEN
        INSERT INTO ledger_transaction AS t (user_id, idempotency_key, kind, payment_order_id)
        VALUES (p_user_id, v_key, o.kind || '_return', p_order_id)
        ON CONFLICT (user_id, idempotency_key) DO NOTHING
        RETURNING t.transaction_id INTO v_txn;
        IF v_txn IS NULL THEN
            RETURN QUERY SELECT e.transaction_id, e.entry_id, e.account_id, e.currency::text, e.amount_minor,
                                e.balance_after_minor, true
                           FROM ledger_transaction t JOIN ledger_entry e ON e.transaction_id = t.transaction_id
                          WHERE t.user_id = p_user_id AND t.idempotency_key = v_key ORDER BY e.entry_id;
            RETURN;
        END IF;
        v_credit := (ledger_account_ids('psp_clearing', o.psp, o.currency, p_slices))[1 + v_slice];
        v_wallet := (ledger_account_ids('user_wallet', p_user_id, o.currency, 1))[1];
        IF o.kind = 'payout' THEN
            RETURN QUERY
            WITH legs AS (
                INSERT INTO ledger_entry AS e (transaction_id, user_id, account_id, currency, amount_minor)
                SELECT v_txn, l.user_id, l.account_id, o.currency, l.amount_minor
                  FROM (VALUES (v_system, v_credit, -o.amount_minor), (p_user_id, v_wallet, o.amount_minor))
                       AS l(user_id, account_id, amount_minor)
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
        PERFORM 1 FROM account a
          WHERE (a.user_id, a.account_id) IN ((v_system, v_credit), (p_user_id, v_wallet), (v_system, v_receivable))
          ORDER BY a.account_id FOR UPDATE;
        SELECT least(greatest(a.balance_minor, 0), o.amount_minor) INTO v_from_wallet
          FROM account a WHERE a.user_id = p_user_id AND a.account_id = v_wallet;
        RETURN QUERY
        WITH legs AS (
            INSERT INTO ledger_entry AS e (transaction_id, user_id, account_id, currency, amount_minor)
            SELECT v_txn, l.user_id, l.account_id, o.currency, l.amount_minor
              FROM (VALUES (v_system, v_credit, o.amount_minor), (p_user_id, v_wallet, -v_from_wallet),
                           (v_system, v_receivable, v_from_wallet - o.amount_minor))
                   AS l(user_id, account_id, amount_minor)
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
        IF v_payee IS NULL OR v_payee = p_user_id THEN
            RAISE EXCEPTION 'payment order %: % is not another user''s wallet', p_order_id, left(o.to_acct, 80)
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_posting_justified';
        END IF;
        d_kind := 'user_wallet'; d_name := p_user_id; c_kind := 'user_wallet'; c_name := v_payee;
    ELSIF p_step = 'reserve' THEN
        d_kind := 'user_wallet'; d_name := p_user_id; c_kind := 'payout_hold'; c_name := p_user_id;
    ELSIF p_step = 'release' THEN
        d_kind := 'payout_hold'; d_name := p_user_id; c_kind := 'user_wallet'; c_name := p_user_id;
    ELSIF o.kind = 'payin' THEN
        d_kind := 'psp_clearing'; d_name := o.psp; c_kind := 'user_wallet'; c_name := p_user_id;
    ELSE
        d_kind := 'payout_hold'; d_name := p_user_id; c_kind := 'psp_clearing'; c_name := o.psp;
    END IF;
    d_code := CASE d_kind WHEN 'user_wallet' THEN 'wallet:' WHEN 'payout_hold' THEN 'payout_hold:'
                          ELSE 'psp_clearing:' END || d_name;
    c_code := CASE c_kind WHEN 'user_wallet' THEN 'wallet:' WHEN 'payout_hold' THEN 'payout_hold:'
                          ELSE 'psp_clearing:' END || c_name;
    d_user := CASE d_kind WHEN 'psp_clearing' THEN v_system ELSE d_name END;
    c_user := CASE c_kind WHEN 'psp_clearing' THEN v_system ELSE c_name END;
    SELECT a.account_id INTO v_debit FROM account a
     WHERE a.user_id = d_user AND a.code = d_code AND a.currency = o.currency;
    SELECT a.account_id INTO v_credit FROM account a
     WHERE a.user_id = c_user AND a.code = c_code AND a.currency = o.currency;
    IF v_debit IS NULL THEN
        v_debit := (ledger_account_ids(d_kind, d_name, o.currency, p_slices))[1 + CASE d_kind WHEN 'psp_clearing'
                                                                                     THEN v_slice ELSE 0 END];
    END IF;
    IF v_credit IS NULL THEN
        v_credit := (ledger_account_ids(c_kind, c_name, o.currency, p_slices))[1 + CASE c_kind WHEN 'psp_clearing'
                                                                                      THEN v_slice ELSE 0 END];
    END IF;

    INSERT INTO ledger_transaction AS t (user_id, idempotency_key, kind, payment_order_id)
    VALUES (p_user_id, v_key, o.kind || '_' || p_step, p_order_id)
    ON CONFLICT (user_id, idempotency_key) DO NOTHING
    RETURNING t.transaction_id INTO v_txn;
    IF v_txn IS NULL THEN  -- posted before (a concurrent caller committed it meanwhile)
        RETURN QUERY SELECT e.transaction_id, e.entry_id, e.account_id, e.currency::text, e.amount_minor,
                            e.balance_after_minor, true
                       FROM ledger_transaction t JOIN ledger_entry e ON e.transaction_id = t.transaction_id
                      WHERE t.user_id = p_user_id AND t.idempotency_key = v_key ORDER BY e.entry_id;
        RETURN;
    END IF;
    RETURN QUERY
    WITH legs AS (
        INSERT INTO ledger_entry AS e (transaction_id, user_id, account_id, currency, amount_minor)
        SELECT v_txn, l.user_id, l.account_id, o.currency, l.amount_minor
          FROM (VALUES (d_user, v_debit, -o.amount_minor), (c_user, v_credit, o.amount_minor))
               AS l(user_id, account_id, amount_minor)
         ORDER BY l.account_id
        RETURNING e.transaction_id, e.entry_id, e.account_id, e.currency::text, e.amount_minor,
                  e.balance_after_minor, false
    )
    SELECT * FROM legs;
END
$$;
REVOKE ALL ON FUNCTION post_order(text, uuid, text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION post_order(text, uuid, text, integer) TO {app_role};

-- The previous signature, for one release: the order's user, then the above.
CREATE OR REPLACE FUNCTION post_order(p_order_id uuid, p_step text, p_slices integer DEFAULT 32)
RETURNS TABLE (transaction_id bigint, entry_id bigint, account_id bigint, currency text,
               amount_minor bigint, balance_after_minor bigint, replayed boolean)
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp SET plan_cache_mode = force_generic_plan AS $$
    SELECT * FROM post_order((SELECT po.user_id FROM payment_order po WHERE po.payment_order_id = p_order_id),
                             p_order_id, p_step, p_slices)
$$;

-- -- 8. reconciliation's postings -------------------------------------------------------------
-- A failed pay-out's reserve, released (0021), for the order (p_user_id, p_order_id).
CREATE FUNCTION post_recon_release(p_user_id text, p_order_id uuid)
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
      INTO o FROM payment_order po WHERE po.user_id = p_user_id AND po.payment_order_id = p_order_id FOR UPDATE;
    v_found := FOUND;
    SELECT t.transaction_id INTO v_txn FROM ledger_transaction t
     WHERE t.user_id = p_user_id AND t.idempotency_key = v_key;
    IF FOUND THEN
        RETURN QUERY SELECT v_txn, true;
        RETURN;
    END IF;
    IF NOT v_found OR o.kind IS DISTINCT FROM 'payout' OR o.status IS DISTINCT FROM 'failed'
       OR NOT EXISTS (SELECT 1 FROM ledger_transaction t
                       WHERE t.user_id = p_user_id AND t.idempotency_key = p_order_id::text || ':reserve')
       OR EXISTS (SELECT 1 FROM ledger_transaction t
                   WHERE t.user_id = p_user_id AND t.idempotency_key = p_order_id::text || ':settle') THEN
        RAISE EXCEPTION 'payment order % does not justify a reconciliation release', p_order_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_posting_justified';
    END IF;
    v_hold := (ledger_account_ids('payout_hold', p_user_id, o.currency, 1))[1];
    v_wallet := (ledger_account_ids('user_wallet', p_user_id, o.currency, 1))[1];
    INSERT INTO ledger_transaction AS t (user_id, idempotency_key, kind, payment_order_id, description)
    VALUES (p_user_id, v_key, 'payout_release', p_order_id, 'reconciliation: reserve of a failed pay-out')
    RETURNING t.transaction_id INTO v_txn;
    INSERT INTO ledger_entry (transaction_id, user_id, account_id, currency, amount_minor)
    SELECT v_txn, p_user_id, l.account_id, o.currency, l.amount_minor
      FROM (VALUES (v_hold, -o.amount_minor), (v_wallet, o.amount_minor)) AS l(account_id, amount_minor)
     ORDER BY l.account_id;
    RETURN QUERY SELECT v_txn, false;
END
$$;
REVOKE ALL ON FUNCTION post_recon_release(text, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION post_recon_release(text, uuid) TO {app_role};

CREATE OR REPLACE FUNCTION post_recon_release(p_order_id uuid)
RETURNS TABLE (transaction_id bigint, replayed boolean)
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT * FROM post_recon_release((SELECT po.user_id FROM payment_order po WHERE po.payment_order_id = p_order_id),
                                     p_order_id)
$$;

-- A settlement file's fees (0021): no order, so no user; the transaction and both accounts
-- (slice 0, as before) belong to `system:0`, a fixed owner, so the key's user never varies.
CREATE OR REPLACE FUNCTION post_settlement_fees(p_owner text, p_sha256 bytea)
RETURNS TABLE (transaction_id bigint, currency text, fee_minor bigint, replayed boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
#variable_conflict use_column
DECLARE
    v_psp text := substring(p_owner FROM '^recon:([a-z][a-z0-9_]{0,39})$');
    v_system text := 'system:0';
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
                        WHERE s.user_id = o.user_id AND s.idempotency_key = o.payment_order_id::text || ':settle')
         GROUP BY l.currency ORDER BY l.currency
    LOOP
        v_key := 'settlement_fee:' || v_psp || ':' || encode(p_sha256, 'hex') || ':' || f.currency;
        INSERT INTO ledger_transaction AS t (user_id, idempotency_key, kind, description)
        VALUES (v_system, v_key, 'settlement_fee', 'provider fees of settlement file ' || encode(p_sha256, 'hex'))
        ON CONFLICT (user_id, idempotency_key) DO NOTHING
        RETURNING t.transaction_id INTO v_txn;
        IF v_txn IS NULL THEN
            SELECT t.transaction_id INTO v_txn FROM ledger_transaction t
             WHERE t.user_id = v_system AND t.idempotency_key = v_key;
            RETURN QUERY SELECT v_txn, f.currency, f.total::bigint, true;
            CONTINUE;
        END IF;
        v_clearing := (ledger_account_ids('psp_clearing', v_psp, f.currency, 1))[1];
        v_fees := (ledger_account_ids('fees', v_psp, f.currency, 1))[1];
        INSERT INTO ledger_entry (transaction_id, user_id, account_id, currency, amount_minor)
        SELECT v_txn, v_system, l.account_id, f.currency, l.amount_minor
          FROM (VALUES (v_clearing, f.total), (v_fees, -f.total)) AS l(account_id, amount_minor)
         ORDER BY l.account_id;
        RETURN QUERY SELECT v_txn, f.currency, f.total::bigint, false;
    END LOOP;
END
$$;

-- -- 9. post_reversal (0024) ------------------------------------------------------------------
-- The reversal's user is its order's: the order is selected by (p_user_id, order id), the
-- transaction carries p_user_id, the system slice is the user's.
CREATE OR REPLACE FUNCTION post_reversal(p_user_id text, p_reversal_id uuid, p_slices integer DEFAULT 32)
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
    v_system text;
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
      INTO o FROM payment_order po
     WHERE po.user_id = p_user_id AND po.payment_order_id = r.payment_order_id FOR UPDATE;
    IF NOT FOUND OR r.state <> 'psp_submitting' OR r.currency <> o.currency THEN
        RAISE EXCEPTION 'reversal % (%) does not justify a posting', p_reversal_id, r.state
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_posting_justified';
    END IF;
    IF p_slices IS NULL OR p_slices < 1 OR p_slices > 256 THEN
        RAISE EXCEPTION 'system account slices must be 1..256, got %', p_slices
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_posting_justified';
    END IF;
    v_settled := EXISTS (SELECT 1 FROM ledger_transaction t
                          WHERE t.user_id = p_user_id AND t.idempotency_key = r.payment_order_id::text || ':settle');
    IF v_settled THEN
        v_key := r.payment_order_id::text || ':reversal:' || p_reversal_id::text;
        v_kind := CASE o.kind WHEN 'payin' THEN 'payin_refund' ELSE 'payout_reversal' END;
    ELSIF o.kind = 'payout'
          AND EXISTS (SELECT 1 FROM ledger_transaction t
                       WHERE t.user_id = p_user_id AND t.idempotency_key = r.payment_order_id::text || ':reserve')
          AND NOT EXISTS (SELECT 1 FROM ledger_transaction t
                           WHERE t.user_id = p_user_id
                             AND t.idempotency_key = r.payment_order_id::text || ':release') THEN
        IF r.amount_minor <> o.amount_minor THEN
            RAISE EXCEPTION 'reversal % of an unsettled pay-out must be whole', p_reversal_id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_posting_justified';
        END IF;
        v_key := r.payment_order_id::text || ':release';
        v_kind := 'payout_release';
    ELSE
        RETURN;  -- nothing of this payment was posted: nothing to compensate
    END IF;
    v_slice := ((hashtext(p_user_id)::bigint % p_slices) + p_slices) % p_slices;
    v_system := 'system:' || v_slice;
    INSERT INTO ledger_transaction AS t (user_id, idempotency_key, kind, payment_order_id, description)
    VALUES (p_user_id, v_key, v_kind, r.payment_order_id, 'reversal ' || p_reversal_id::text)
    RETURNING t.transaction_id INTO v_txn;
    v_wallet := (ledger_account_ids('user_wallet', p_user_id, o.currency, 1))[1];
    IF v_kind = 'payout_release' THEN
        v_hold := (ledger_account_ids('payout_hold', p_user_id, o.currency, 1))[1];
        INSERT INTO ledger_entry (transaction_id, user_id, account_id, currency, amount_minor)
        SELECT v_txn, p_user_id, l.account_id, o.currency, l.amount_minor
          FROM (VALUES (v_hold, -r.amount_minor), (v_wallet, r.amount_minor)) AS l(account_id, amount_minor)
         ORDER BY l.account_id;
    ELSIF v_kind = 'payout_reversal' THEN
        v_clearing := (ledger_account_ids('psp_clearing', o.psp, o.currency, p_slices))[1 + v_slice];
        INSERT INTO ledger_entry (transaction_id, user_id, account_id, currency, amount_minor)
        SELECT v_txn, l.user_id, l.account_id, o.currency, l.amount_minor
          FROM (VALUES (v_system, v_clearing, -r.amount_minor), (p_user_id, v_wallet, r.amount_minor))
               AS l(user_id, account_id, amount_minor)
         ORDER BY l.account_id;
    ELSE
        v_clearing := (ledger_account_ids('psp_clearing', o.psp, o.currency, p_slices))[1 + v_slice];
        v_receivable := (ledger_account_ids('receivable', 'returns', o.currency, p_slices))[1 + v_slice];
        -- The ledger's lock order, then what the wallet holds: it pays what it can, the receivable the rest.
        PERFORM 1 FROM account a
          WHERE (a.user_id, a.account_id) IN ((v_system, v_clearing), (p_user_id, v_wallet), (v_system, v_receivable))
          ORDER BY a.account_id FOR UPDATE;
        SELECT least(greatest(a.balance_minor, 0), r.amount_minor) INTO v_from_wallet
          FROM account a WHERE a.user_id = p_user_id AND a.account_id = v_wallet;
        INSERT INTO ledger_entry (transaction_id, user_id, account_id, currency, amount_minor)
        SELECT v_txn, l.user_id, l.account_id, o.currency, l.amount_minor
          FROM (VALUES (v_system, v_clearing, r.amount_minor), (p_user_id, v_wallet, -v_from_wallet),
                       (v_system, v_receivable, v_from_wallet - r.amount_minor)) AS l(user_id, account_id, amount_minor)
         WHERE l.amount_minor <> 0
         ORDER BY l.account_id;
    END IF;
    UPDATE payment_reversal rv SET transaction_id = v_txn
     WHERE rv.user_id = p_user_id AND rv.reversal_id = p_reversal_id;
    RETURN QUERY SELECT v_txn, false;
END
$$;
