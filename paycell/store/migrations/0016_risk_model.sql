-- The fraud model's versions (issue 8): each trained model with where its data came from, its
-- window, its held-out metrics and the model itself, serialised with skops (never pickle).
--
-- A reference (global configuration) table, not user-scoped: under Citus it is a reference table
-- (SELECT create_reference_table('risk_model')), replicated to every node, no user_id.
--
-- Lifecycle: a trainer inserts its model as `candidate`, then decides in one transaction (holding
-- the promoted row's lock, paycell/risk/promote.py): `promoted` (the previous one becomes
-- `retired`) or `rejected` with a note saying why. At most one model is promoted. The app role
-- inserts and may change only status, promoted_at and note, along the moves the trigger allows;
-- it never deletes a model (a retired one stays: which model scored a payment stays answerable).
-- Runs as the owner role; `{app_role}` is replaced by the runner.
CREATE TABLE risk_model (
    version        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- 'actor' (the weekly training), 'cli' (`paycell risk train`), or an operator's user id.
    trained_by     text NOT NULL CHECK (trained_by ~ '^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$'),
    -- 'synthetic' (paycell.risk.synthetic; source_detail holds seed, users, days) or 'history'
    -- (the platform's own payments; source_detail holds the window's days and row counts).
    source         text NOT NULL CHECK (source IN ('synthetic', 'history')),
    source_detail  jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(source_detail) = 'object'),
    -- The training data's time window, and where its held-out slice (the evaluation) begins.
    window_from    timestamptz NOT NULL,
    window_to      timestamptz NOT NULL,
    holdout_from   timestamptz NOT NULL,
    -- The model's input columns, in order: a worker refuses a model whose names differ from its
    -- paycell.risk.features.NAMES.
    feature_names  text[] NOT NULL CHECK (cardinality(feature_names) BETWEEN 1 AND 1000),
    metrics        jsonb NOT NULL CHECK (jsonb_typeof(metrics) = 'object'),
    format         text NOT NULL CHECK (format IN ('skops')),
    model          bytea NOT NULL CHECK (length(model) BETWEEN 1 AND 268435456),
    model_sha256   bytea NOT NULL CHECK (length(model_sha256) = 32),
    status         text NOT NULL DEFAULT 'candidate'
                       CHECK (status IN ('candidate', 'promoted', 'rejected', 'retired')),
    promoted_at    timestamptz,
    note           text CHECK (length(note) <= 2000),
    CONSTRAINT risk_model_window CHECK (window_from <= holdout_from AND holdout_from < window_to),
    CONSTRAINT risk_model_promoted_when CHECK (status NOT IN ('promoted', 'retired') OR promoted_at IS NOT NULL)
);
-- At most one promoted model: the last guard if two trainers ever raced past the row lock.
CREATE UNIQUE INDEX risk_model_one_promoted ON risk_model ((true)) WHERE status = 'promoted';

-- The moves a model may make: candidate -> promoted | rejected, promoted -> retired. A model's
-- promoted_at is set once, when it is promoted.
CREATE FUNCTION risk_model_status_move() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status
       AND (OLD.status, NEW.status) NOT IN (('candidate', 'promoted'), ('candidate', 'rejected'),
                                            ('promoted', 'retired')) THEN
        RAISE EXCEPTION 'risk model %: % -> % is not a move a model makes', OLD.version, OLD.status, NEW.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'risk_model_status_move';
    END IF;
    IF OLD.promoted_at IS NOT NULL AND NEW.promoted_at IS DISTINCT FROM OLD.promoted_at THEN
        RAISE EXCEPTION 'risk model %: promoted_at is set once', OLD.version
            USING ERRCODE = 'check_violation', CONSTRAINT = 'risk_model_status_move';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER risk_model_status_move BEFORE UPDATE ON risk_model
    FOR EACH ROW EXECUTE FUNCTION risk_model_status_move();
CREATE TRIGGER risk_model_no_delete BEFORE DELETE ON risk_model
    FOR EACH ROW EXECUTE FUNCTION forbid_rewrite();
CREATE TRIGGER risk_model_no_truncate BEFORE TRUNCATE ON risk_model
    FOR EACH STATEMENT EXECUTE FUNCTION forbid_rewrite();

GRANT SELECT, INSERT ON risk_model TO {app_role};
GRANT UPDATE (status, promoted_at, note) ON risk_model TO {app_role};

-- The training reads a window of payments in created_at order (paycell/risk/history.py).
CREATE INDEX payment_request_created ON payment_request (created_at);
