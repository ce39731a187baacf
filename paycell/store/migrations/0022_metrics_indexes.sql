-- GET /metrics (paycell/metrics/system.py) reads, at each scrape, the payments a human must look at
-- and the dead letters not yet replayed. Both sets are small and stay small (a human empties them)
-- while the tables around them grow with every payment: a partial index keeps each read proportional
-- to the set, not to the table.
CREATE INDEX payment_order_needs_attention ON payment_order (updated_at)
    WHERE payment_order_status = 'needs_attention';
CREATE INDEX dead_letter_pending ON dead_letter (failed_at) WHERE replayed_at IS NULL;
