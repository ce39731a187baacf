-- The payment order's key carries its user (issue 12, docs/scale.md): on Citus, payment_order and
-- psp_attempt are distributed by user_id, whose column must be in every primary key and unique
-- constraint, and in every foreign key between the two. Every step now locks an order by
-- (user_id, payment_order_id), which the new primary key serves: a router query to one shard.
--
-- The index payment_order_by_id (payment_order_id alone, NOT unique: uniqueness of the id is the
-- uuid's, and Citus could not enforce it without the user) stays for the paths that know the id
-- alone: the owner lookup of a provider's webhook, the customer's return and a reconciliation line
-- (payments.owner_of, a multi-shard probe on Citus), and the ledger's SQL functions (post_order and
-- its siblings), which select the order by its id.
--
-- A migration runs in one transaction, so the swap of the primary key takes the table's lock for
-- its duration; on a table too large for that, the online path is the one docs/scale.md gives
-- (CREATE UNIQUE INDEX CONCURRENTLY on (user_id, payment_order_id), then ADD PRIMARY KEY USING INDEX).
ALTER TABLE psp_attempt DROP CONSTRAINT psp_attempt_payment_order_id_fkey;
ALTER TABLE payment_order DROP CONSTRAINT payment_order_pkey;
ALTER TABLE payment_order ADD CONSTRAINT payment_order_pkey PRIMARY KEY (user_id, payment_order_id);
CREATE INDEX payment_order_by_id ON payment_order (payment_order_id);
ALTER TABLE psp_attempt ADD CONSTRAINT psp_attempt_order_fkey
    FOREIGN KEY (user_id, payment_order_id) REFERENCES payment_order (user_id, payment_order_id);

-- A reversal's admission locks its order by the order's full key (the reversal carries its user).
CREATE OR REPLACE FUNCTION payment_reversal_admitted() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
    o record;
    v_taken bigint;
BEGIN
    SELECT po.user_id, po.payment_id, po.kind, po.amount_minor, po.currency::text AS currency,
           po.payment_order_status AS status, po.psp
      INTO o FROM payment_order po
     WHERE po.user_id = NEW.user_id AND po.payment_order_id = NEW.payment_order_id FOR UPDATE;
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

-- The webhook inbox keeps the owner of the order an event names by paycell's order id, found in
-- the statement that stores the event (the probe of payment_order it makes already, to tell an
-- outcome the order records): the apply actor then locks the order by its key without a lookup of
-- its own. NULL when the event names the order by the provider's reference only, or no order yet.
ALTER TABLE psp_event ADD COLUMN owner_id text;
