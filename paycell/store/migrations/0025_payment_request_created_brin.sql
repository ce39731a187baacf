-- The operator console counts the last hour's payments per minute and status (its overview chart)
-- and lists payments of a status across users within the last 24 h: both read payment_request by
-- `created_at`, which had no index since 0019 dropped the B-tree payment_request_created (it cost
-- every payment an index insert). A BRIN index keeps one summary per 128 heap pages: payment
-- requests are inserted in time order, so the recent ranges are the last few pages, found without a
-- scan of the table, at the cost of a few bytes per 128 pages and no per-row index insert
-- (autosummarize: the newest range is summarised in the background once it fills).
CREATE INDEX payment_request_created_brin ON payment_request USING brin (created_at) WITH (autosummarize = on);
