-- Signed outgoing webhooks per account (issue 16). `secret` is a Fernet token sealed with
-- LIVEOP_ENCRYPTION_KEYS (server/crypto.py), like channel credentials; `events` is a JSON list.
-- A webhook that kept failing is disabled with the reason an admin reads.
CREATE TABLE webhooks (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id BIGINT NOT NULL,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    secret TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    disabled_reason TEXT,
    created DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (account_id, id)
);
-- One event for one webhook, queued in the transaction of the change it tells of. `body` is the
-- exact JSON posted (signed at each attempt); `attempts` counts every claim (the fencing token,
-- never reset) and `budget_from` is its value when an admin last replayed the delivery, so a
-- replay gets a fresh set of retries.
CREATE TABLE webhook_deliveries (
    id TEXT NOT NULL PRIMARY KEY,
    account_id TEXT NOT NULL,
    webhook_id BIGINT NOT NULL,
    event_seq BIGINT NOT NULL,
    event TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    budget_from BIGINT NOT NULL,
    claimed_by TEXT,
    lease_until DOUBLE PRECISION,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    last_error TEXT,
    created DOUBLE PRECISION NOT NULL,
    FOREIGN KEY (account_id, webhook_id) REFERENCES webhooks (account_id, id) ON DELETE CASCADE
);
-- Order per webhook, and the admin's log (newest first).
CREATE INDEX webhook_deliveries_by_webhook
    ON webhook_deliveries (account_id, webhook_id, event_seq, event);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'queued';
-- Every attempt at a delivery, with the receiver's status code or why there was none.
CREATE TABLE webhook_attempts (
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt BIGINT NOT NULL,
    account_id TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    status_code BIGINT,
    error TEXT,
    PRIMARY KEY (delivery_id, attempt)
);
