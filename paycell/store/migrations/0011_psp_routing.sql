-- The router (issue 7): routing table, failover between connectors, polling deadline.
-- Runs as the owner role; `{app_role}` is replaced by the runner.
--
-- payment_order gains
--   payment_option    the payment's option (card, bank_account, ...), copied at acceptance: the
--                     router and the charge read it with the order's lock, no join. The app role
--                     gets no UPDATE on it, so it is frozen like the money fields.
--   psp_candidates    the connectors that may carry the order, in order, fixed by `screen`
--                     (the route, filtered to connectors the user attached the instrument on,
--                     that support the payment and are configured)
--   psp_attempt_no    the current attempt's number in psp_attempt (0 before any)
--   psp_attempt_from  the order's `attempt` when that attempt began: attempt - psp_attempt_from
--                     counts the calls of the current connector whose outcome stayed unknown
--   psp_unknown_at    when the last of those calls was given up on: the order leaves a connector
--                     only PAYCELL_PSP_FAILOVER_QUIET_S after it (a request the provider was still
--                     processing when paycell stopped waiting must have finished by then)
-- and the app role may move deadline_at (a charge pending at the PSP gets its own deadline,
-- PAYCELL_PSP_PENDING_DEADLINE_S, which the sweeper then applies like any other).
ALTER TABLE payment_order
    ADD COLUMN payment_option text,
    ADD COLUMN psp_candidates text[],
    ADD COLUMN psp_attempt_no integer NOT NULL DEFAULT 0 CHECK (psp_attempt_no >= 0),
    ADD COLUMN psp_attempt_from integer NOT NULL DEFAULT 0 CHECK (psp_attempt_from >= 0),
    ADD COLUMN psp_unknown_at timestamptz;
UPDATE payment_order o SET payment_option = r.payment_option
  FROM payment_request r WHERE r.user_id = o.user_id AND r.payment_id = o.payment_id;
ALTER TABLE payment_order ALTER COLUMN payment_option SET NOT NULL;
GRANT UPDATE (psp_candidates, psp_attempt_no, psp_attempt_from, psp_unknown_at, deadline_at) ON payment_order
    TO {app_role};

-- One row per connector an order was sent to, written in the transaction (the statement) that
-- moves the order onto it: why (routed by `screen`, moved on because the first's breaker was
-- open before anything was sent, or failed over once the first said it holds no such payment).
-- The app inserts and reads; a row never changes.
CREATE TABLE psp_attempt (
    user_id           text NOT NULL,
    payment_order_id  uuid NOT NULL REFERENCES payment_order (payment_order_id),
    attempt_no        integer NOT NULL CHECK (attempt_no >= 1),
    connector         text NOT NULL,
    reason            text NOT NULL CHECK (reason IN ('routed', 'breaker_open', 'failover')),
    started_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, payment_order_id, attempt_no)   -- the shard key leads
);
GRANT SELECT, INSERT ON psp_attempt TO {app_role};
