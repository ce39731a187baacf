-- Fewer indexes on payment_request, the table every payment inserts into (issue 8's benchmark:
-- Postgres CPU per payment rose by about a quarter with the three indexes 0013, 0016 and 0017 added).
-- - The velocity aggregates and the model's features count an instrument's payments among its
--   user's own (paycell/risk/velocity_pg.py, features.py): the user's index (user_id, created_at)
--   serves them, and the instrument indexes of 0013/0017 served nothing.
-- - The transfers a user received (a feature) need payment_request by to_acct: transfers only.
-- - The weekly training reads a 90-day window of every user's payments once a week: a sequential
--   scan then costs less than an index maintained on every insert in between.
DROP INDEX payment_request_payin_instrument_recent;
DROP INDEX payment_request_to_acct_recent;
DROP INDEX payment_request_created;
CREATE INDEX payment_request_transfer_to_recent ON payment_request (to_acct, created_at DESC)
    WHERE kind = 'transfer';
