-- A balance moves only through an entry, for the schema owner too: an UPDATE of an account's
-- balance or entry count is accepted only when it comes from the entry trigger
-- (ledger_entry_apply), i.e. at trigger depth 2. A hand-written UPDATE runs at depth 1.
CREATE OR REPLACE FUNCTION account_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'accounts are never deleted' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (NEW.account_id, NEW.code, NEW.kind, NEW.owner_id, NEW.currency, NEW.slice, NEW.created_at)
       IS DISTINCT FROM (OLD.account_id, OLD.code, OLD.kind, OLD.owner_id, OLD.currency, OLD.slice, OLD.created_at) THEN
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
