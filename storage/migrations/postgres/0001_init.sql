-- The SQLite schema in PostgreSQL types: times are Unix seconds (DOUBLE PRECISION holds a
-- Python float exactly), ids and seqs are BIGINT like SQLite's 64-bit INTEGER.

CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    -- Every write that appends events bumps this under the row lock, which is what makes
    -- account event seqs gapless and ordered as the commits are.
    last_event_seq BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE api_keys (
    key_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created DOUBLE PRECISION NOT NULL
);

-- Per-account id counters, so operator/team/canned numbers are small, private to the
-- account and never reused after a delete (a sequence would be shared by every account).
CREATE TABLE counters (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    last_id BIGINT NOT NULL,
    PRIMARY KEY (account_id, kind)
);

CREATE TABLE operators (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id BIGINT NOT NULL,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    is_admin BOOLEAN NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (account_id, id)
);
-- Emails are logins, unique across accounts and compared case-insensitively.
CREATE UNIQUE INDEX operators_email ON operators (lower(email));

CREATE TABLE teams (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id BIGINT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (account_id, id)
);

CREATE TABLE team_members (
    account_id TEXT NOT NULL,
    team_id BIGINT NOT NULL,
    operator_id BIGINT NOT NULL,
    PRIMARY KEY (account_id, team_id, operator_id),
    FOREIGN KEY (account_id, team_id) REFERENCES teams (account_id, id) ON DELETE CASCADE,
    FOREIGN KEY (account_id, operator_id) REFERENCES operators (account_id, id) ON DELETE CASCADE
);
-- PostgreSQL does not index the referencing side of a foreign key: without this, deleting an
-- operator scans every membership to cascade.
CREATE INDEX team_members_operator ON team_members (account_id, operator_id);

CREATE TABLE canned (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id BIGINT NOT NULL,
    name TEXT NOT NULL,
    tag TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (account_id, id)
);

CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    source_app TEXT NOT NULL,
    status TEXT NOT NULL,
    mode TEXT NOT NULL,
    operator_id BIGINT,
    team_id BIGINT,
    fname TEXT NOT NULL,
    lname TEXT NOT NULL,
    email TEXT NOT NULL,
    phone TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    last_activity DOUBLE PRECISION NOT NULL,
    resolved_at DOUBLE PRECISION,
    last_seq BIGINT NOT NULL,
    unread BIGINT NOT NULL,
    operator_read_seq BIGINT NOT NULL,
    visitor_read_seq BIGINT NOT NULL
);
CREATE INDEX conversations_activity ON conversations (account_id, last_activity DESC);

CREATE TABLE messages (
    convo_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    operator_id BIGINT,
    operator_name TEXT,
    text TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    client_msg_id TEXT,
    delivery TEXT,
    PRIMARY KEY (convo_id, seq)
);
-- The store names this index when it recognises a concurrent retry of the same client id.
CREATE UNIQUE INDEX messages_client_id ON messages (account_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;

CREATE TABLE events (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    convo_id TEXT NOT NULL,
    msg_seq BIGINT,
    created DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (account_id, seq)
);
