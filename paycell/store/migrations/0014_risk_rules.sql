-- Risk rule sets and named lists, versioned (issue 8). Runs as the owner role; `{app_role}` is
-- replaced by the runner.
--
-- Reference tables: global configuration, not user-scoped, read by every worker. Under Citus they
-- are reference tables (create_reference_table: a copy on every node), so they carry no user_id and
-- their keys need not lead with one.
--
-- risk_rule_set: every rule set ever accepted, as submitted (the API compiles it first: a rule set
-- with any problem is never stored). Append-only for the app role. The same text is stored once
-- (sha256 unique): pushing it again names the version it already has.
CREATE TABLE risk_rule_set (
    version     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source      text NOT NULL CHECK (octet_length(source) BETWEEN 1 AND 65536),
    sha256      bytea NOT NULL UNIQUE CHECK (sha256 = sha256(convert_to(source, 'UTF8'))),
    created_by  text NOT NULL CHECK (length(created_by) BETWEEN 1 AND 100),
    created_at  timestamptz NOT NULL DEFAULT now(),
    note        text NOT NULL DEFAULT '' CHECK (length(note) <= 500)
);

-- Which rule set is in force: the latest activation (highest activation_id). Rolling back is
-- activating an older version, so who put what in force, and when, is never lost. Writers take
-- an advisory lock first (paycell/store/risk_rules.py), so ids follow commit order.
CREATE TABLE risk_rule_set_activation (
    activation_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    version        bigint NOT NULL REFERENCES risk_rule_set (version),
    activated_by   text NOT NULL CHECK (length(activated_by) BETWEEN 1 AND 100),
    activated_at   timestamptz NOT NULL DEFAULT now()
);

-- Named lists the rules test membership in (`ip in list:blocked_ips`). A list is never deleted:
-- a rule set in force may name it, and its history stays readable.
CREATE TABLE risk_list (
    name        text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    kind        text NOT NULL CHECK (kind IN ('user', 'instrument', 'ip', 'country')),
    created_by  text NOT NULL CHECK (length(created_by) BETWEEN 1 AND 100),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A list's values over time. Removing an entry sets removed_by/removed_at (once: a trigger refuses
-- any other change); adding the value again inserts a new row. At most one live row per value.
-- Values are validated and normalised per kind by the app (IPs by `ipaddress`, countries upper case).
CREATE TABLE risk_list_entry (
    entry_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    list_name   text NOT NULL REFERENCES risk_list (name),
    value       text NOT NULL CHECK (length(value) BETWEEN 1 AND 200),
    note        text NOT NULL DEFAULT '' CHECK (length(note) <= 500),
    added_by    text NOT NULL CHECK (length(added_by) BETWEEN 1 AND 100),
    added_at    timestamptz NOT NULL DEFAULT now(),
    removed_by  text CHECK (length(removed_by) BETWEEN 1 AND 100),
    removed_at  timestamptz,
    CHECK ((removed_by IS NULL) = (removed_at IS NULL))
);
CREATE UNIQUE INDEX risk_list_entry_live ON risk_list_entry (list_name, value) WHERE removed_at IS NULL;
-- A list's entries, newest first (the API's pages).
CREATE INDEX risk_list_entry_recent ON risk_list_entry (list_name, entry_id DESC);

CREATE FUNCTION risk_list_entry_remove_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.removed_at IS NOT NULL OR NEW.removed_at IS NULL OR NEW.removed_by IS NULL THEN
        RAISE EXCEPTION 'risk_list_entry %: an entry is removed once and never restored (add the value again)',
            OLD.entry_id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER risk_list_entry_remove_once BEFORE UPDATE ON risk_list_entry
    FOR EACH ROW EXECUTE FUNCTION risk_list_entry_remove_once();

-- One small row a worker reads to know whether anything above changed since it last loaded:
-- every statement that changes a row of the tables above bumps it, in its own transaction
-- (statement triggers; a statement that changed nothing, such as adding a value already live,
-- does not). The app role cannot write it: only the triggers' function, run as the owner, does.
CREATE TABLE risk_config_version (
    singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    config_version  bigint NOT NULL CHECK (config_version >= 0),
    changed_at      timestamptz NOT NULL DEFAULT now()
);
INSERT INTO risk_config_version (config_version) VALUES (0);

CREATE FUNCTION risk_config_bump() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM changed) THEN
        UPDATE public.risk_config_version SET config_version = config_version + 1, changed_at = now();
    END IF;
    RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION risk_config_bump() FROM PUBLIC;
-- Transition tables allow one event per trigger: one trigger per table and event.
CREATE TRIGGER risk_rule_set_bump AFTER INSERT ON risk_rule_set
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION risk_config_bump();
CREATE TRIGGER risk_rule_set_activation_bump AFTER INSERT ON risk_rule_set_activation
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION risk_config_bump();
CREATE TRIGGER risk_list_bump AFTER INSERT ON risk_list
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION risk_config_bump();
CREATE TRIGGER risk_list_entry_insert_bump AFTER INSERT ON risk_list_entry
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION risk_config_bump();
CREATE TRIGGER risk_list_entry_update_bump AFTER UPDATE ON risk_list_entry
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION risk_config_bump();

-- The four block lists the default rule file names (paycell.rules.check.BLOCK_LISTS).
INSERT INTO risk_list (name, kind, created_by) VALUES
    ('blocked_users', 'user', 'migration:0014'),
    ('blocked_instruments', 'instrument', 'migration:0014'),
    ('blocked_ips', 'ip', 'migration:0014'),
    ('blocked_countries', 'country', 'migration:0014');

-- The app role appends rule sets, activations, lists and entries, and may only mark an entry
-- removed; it can neither rewrite nor delete any of it, nor move the version counter.
GRANT SELECT, INSERT ON risk_rule_set, risk_rule_set_activation, risk_list, risk_list_entry TO {app_role};
GRANT UPDATE (removed_by, removed_at) ON risk_list_entry TO {app_role};
GRANT SELECT ON risk_config_version TO {app_role};
