-- The model's online features (paycell/risk/history_pg.py) count the transfers a user received in
-- the last 24 h: transfers name their payee's wallet in to_acct. The pay-out index of 0013 becomes
-- one index of pay-outs and transfers by to_acct: one index to maintain per such payment, as before.
DROP INDEX payment_request_payout_instrument_recent;
CREATE INDEX payment_request_to_acct_recent ON payment_request (to_acct, created_at DESC)
    WHERE kind IN ('payout', 'transfer');
