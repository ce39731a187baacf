-- The entry's BEFORE trigger already finds its account (to move the balance); matching the
-- currency there too makes the composite foreign key (account_id, currency) a second lookup of
-- the same row per entry. The trigger now refuses an unknown account or a currency other than
-- the account's; the foreign key goes.
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
     WHERE account_id = NEW.account_id AND currency = NEW.currency
    RETURNING balance_minor INTO NEW.balance_after_minor;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ledger entry for account % in %: no such account in that currency', NEW.account_id, NEW.currency
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END
$$;

ALTER TABLE ledger_entry DROP CONSTRAINT ledger_entry_account_id_currency_fkey;
