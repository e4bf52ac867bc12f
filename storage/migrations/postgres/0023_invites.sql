-- Invitations (issue 18): an admin invites a teammate by email, and the invitee chooses their
-- own password through a one-time link. The link's token (256 random bits) is never stored:
-- `token_hash` is its SHA-256. `used_at` and `operator_id` are set in the transaction that
-- creates the operator, so a link works once; revoking an invitation deletes its row.
-- `team_ids` is a JSON list of the teams the new operator joins.
CREATE TABLE invites (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id BIGINT NOT NULL,
    token_hash TEXT NOT NULL,
    email TEXT NOT NULL,
    name TEXT NOT NULL,
    is_admin BOOLEAN NOT NULL,
    team_ids TEXT NOT NULL,
    invited_by BIGINT,
    created DOUBLE PRECISION NOT NULL,
    expires DOUBLE PRECISION NOT NULL,
    used_at DOUBLE PRECISION,
    operator_id BIGINT,
    PRIMARY KEY (account_id, id)
);
CREATE UNIQUE INDEX invites_by_hash ON invites (token_hash);
