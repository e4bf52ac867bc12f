CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created REAL NOT NULL,
    last_event_seq INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE api_keys (
    key_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created REAL NOT NULL
);

-- Per-account id counters, so operator/team/canned numbers are small, private to the
-- account and never reused after a delete.
CREATE TABLE counters (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    last_id INTEGER NOT NULL,
    PRIMARY KEY (account_id, kind)
) WITHOUT ROWID;

CREATE TABLE operators (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id INTEGER NOT NULL,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    is_admin INTEGER NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (account_id, id)
);
CREATE UNIQUE INDEX operators_email ON operators (email);

CREATE TABLE teams (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id INTEGER NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (account_id, id)
);

CREATE TABLE team_members (
    account_id TEXT NOT NULL,
    team_id INTEGER NOT NULL,
    operator_id INTEGER NOT NULL,
    PRIMARY KEY (account_id, team_id, operator_id),
    FOREIGN KEY (account_id, team_id) REFERENCES teams (account_id, id) ON DELETE CASCADE,
    FOREIGN KEY (account_id, operator_id) REFERENCES operators (account_id, id) ON DELETE CASCADE
) WITHOUT ROWID;

CREATE TABLE canned (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id INTEGER NOT NULL,
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
    operator_id INTEGER,
    team_id INTEGER,
    fname TEXT NOT NULL,
    lname TEXT NOT NULL,
    email TEXT NOT NULL,
    phone TEXT NOT NULL,
    created REAL NOT NULL,
    last_activity REAL NOT NULL,
    resolved_at REAL,
    last_seq INTEGER NOT NULL,
    unread INTEGER NOT NULL,
    operator_read_seq INTEGER NOT NULL,
    visitor_read_seq INTEGER NOT NULL
);
CREATE INDEX conversations_activity ON conversations (account_id, last_activity DESC);

CREATE TABLE messages (
    convo_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    operator_id INTEGER,
    operator_name TEXT,
    text TEXT NOT NULL,
    created REAL NOT NULL,
    client_msg_id TEXT,
    delivery TEXT,
    PRIMARY KEY (convo_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX messages_client_id ON messages (account_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;

CREATE TABLE events (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    convo_id TEXT NOT NULL,
    msg_seq INTEGER,
    created REAL NOT NULL,
    PRIMARY KEY (account_id, seq)
) WITHOUT ROWID;
