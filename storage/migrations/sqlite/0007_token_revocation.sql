-- Operator tokens that can be revoked before they expire (issue 21 item 5). A token carries
-- its operator's token_version when issued; raising it (a password change, "sign out
-- everywhere") revokes every earlier token at once. A single signed-out token is listed
-- in revoked_tokens until it would have expired anyway.
ALTER TABLE operators ADD COLUMN token_version INTEGER NOT NULL DEFAULT 0;
CREATE TABLE revoked_tokens (
    token_id TEXT PRIMARY KEY,
    expires REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX revoked_tokens_by_expiry ON revoked_tokens (expires);
