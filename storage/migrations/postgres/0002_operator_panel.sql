-- As sqlite/0002, in PostgreSQL types. The operator panel (seed 001): sites, blocks,
-- translation, notes, images, push tokens and operator languages. New columns go last.

-- An account's websites: each has its own widget look and may route new conversations to a team.
CREATE TABLE sites (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id BIGINT NOT NULL,
    name TEXT NOT NULL,
    color TEXT NOT NULL,
    position TEXT NOT NULL,
    greeting TEXT NOT NULL,
    team_id BIGINT,
    created DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (account_id, id)
);
-- Every account has site 1, so conversations from before sites existed have a home.
INSERT INTO sites (account_id, id, name, color, position, greeting, team_id, created)
    SELECT id, 1, 'Default', '#2563eb', 'right', '', NULL, created FROM accounts;
INSERT INTO counters (account_id, kind, last_id) SELECT id, 'site', 1 FROM accounts;

ALTER TABLE conversations ADD COLUMN site_id BIGINT NOT NULL DEFAULT 1;
-- The visitor's browser session (widget), so an operator can reach a visitor proactively.
ALTER TABLE conversations ADD COLUMN session_id TEXT;
ALTER TABLE conversations ADD COLUMN block_type TEXT;
ALTER TABLE conversations ADD COLUMN translate BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE conversations ADD COLUMN visitor_lang TEXT NOT NULL DEFAULT '';
ALTER TABLE conversations ADD COLUMN info TEXT NOT NULL DEFAULT '';
-- The newest message an inbox row shows, kept with the row so listing needs no join.
ALTER TABLE conversations ADD COLUMN preview TEXT NOT NULL DEFAULT '';
CREATE INDEX conversations_session ON conversations (account_id, session_id)
    WHERE session_id IS NOT NULL;

ALTER TABLE messages ADD COLUMN private BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE messages ADD COLUMN image_url TEXT;
ALTER TABLE messages ADD COLUMN translation TEXT;
ALTER TABLE messages ADD COLUMN translation_lang TEXT;

ALTER TABLE operators ADD COLUMN lang TEXT NOT NULL DEFAULT 'en';

CREATE TABLE push_tokens (
    account_id TEXT NOT NULL,
    operator_id BIGINT NOT NULL,
    token TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (account_id, operator_id, token),
    FOREIGN KEY (account_id, operator_id) REFERENCES operators (account_id, id) ON DELETE CASCADE
);
