-- As sqlite/0025, in PostgreSQL types. Issue 19: an SMS or email conversation's rating
-- question goes out as a message when it is resolved; this is the resolution (its
-- resolved_at) it was asked for, so that only the customer's answer to that question, once,
-- is taken as a rating.
ALTER TABLE conversations ADD COLUMN rating_asked_resolved_at DOUBLE PRECISION;
