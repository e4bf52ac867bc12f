-- One row per message that leaves through an outside channel (SMS, email), inserted in the
-- transaction that appends the message. Outbound workers claim due rows for a lease
-- (FOR UPDATE SKIP LOCKED), deliver them and record the outcome here and on the message's
-- `delivery` (storage/outbound.py).
CREATE TABLE outbound (
    convo_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    account_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    state TEXT NOT NULL,
    -- Claims so far; also the fencing token that a finishing worker must still hold.
    attempts BIGINT NOT NULL,
    claimed_by TEXT,
    lease_until DOUBLE PRECISION,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    last_error TEXT,
    created DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (convo_id, seq),
    FOREIGN KEY (convo_id, seq) REFERENCES messages (convo_id, seq) ON DELETE CASCADE
);
-- Delivered rows stay for the record; the claim only ever looks at queued ones.
CREATE INDEX outbound_due ON outbound (next_attempt_at) WHERE state = 'queued';
