-- What the risk step knows about where a payment came from (issue 8).
--
-- payment_request.client_ip / client_country: the address the request came from and its country
-- (ISO 3166-1 alpha-2), as the web's edge resolved them (paycell/http/client.py: the peer, or
-- what a trusted proxy says; the country only from a trusted proxy's header). NULL when unknown:
-- requests before this migration, a country no proxy named. Written once, with the request.
-- instrument.country: the issuing country of a card or the country of a bank account, as its
-- connector reports it at attach time; NULL when the connector does not say.
ALTER TABLE payment_request
    ADD COLUMN client_ip inet,
    ADD COLUMN client_country char(2) CHECK (client_country ~ '^[A-Z]{2}$');
ALTER TABLE instrument
    ADD COLUMN country char(2) CHECK (country ~ '^[A-Z]{2}$');
-- The velocity aggregates and the model's instrument features read an instrument's payments in a
-- window, whoever made them: pay-ins name it in from_acct, pay-outs in to_acct.
CREATE INDEX payment_request_payin_instrument_recent ON payment_request (from_acct, created_at DESC)
    WHERE kind = 'payin';
CREATE INDEX payment_request_payout_instrument_recent ON payment_request (to_acct, created_at DESC)
    WHERE kind = 'payout';
