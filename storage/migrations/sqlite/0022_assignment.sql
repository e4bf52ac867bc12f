-- Issue 18: a team may assign each new conversation routed to it to its next online operator,
-- round robin (`auto_assign`), passing over operators who already own `assign_limit` open or
-- active conversations (0: no limit). `last_assigned` is the round robin's cursor, the operator
-- it assigned last (0: none yet); it is read and moved in the transaction that creates the
-- conversation, so processes sharing the store take turns.
ALTER TABLE teams ADD COLUMN auto_assign INTEGER NOT NULL DEFAULT 0;
ALTER TABLE teams ADD COLUMN assign_limit INTEGER NOT NULL DEFAULT 0;
ALTER TABLE teams ADD COLUMN last_assigned INTEGER NOT NULL DEFAULT 0;
-- What an operator owns and has not finished: counted for the limit at every assignment.
CREATE INDEX conversations_owned_open ON conversations (account_id, operator_id)
    WHERE status IN ('open', 'active');
-- Personal canned responses: an operator's own (`operator_id`), beside the account's (NULL).
-- They go with their operator. SQLite adds no table constraint to an existing table: rebuilt
-- (nothing references canned).
CREATE TABLE canned_new (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id INTEGER NOT NULL,
    name TEXT NOT NULL,
    tag TEXT NOT NULL,
    message TEXT NOT NULL,
    operator_id INTEGER,
    PRIMARY KEY (account_id, id),
    FOREIGN KEY (account_id, operator_id) REFERENCES operators (account_id, id) ON DELETE CASCADE
);
INSERT INTO canned_new (account_id, id, name, tag, message)
    SELECT account_id, id, name, tag, message FROM canned;
DROP TABLE canned;
ALTER TABLE canned_new RENAME TO canned;
CREATE INDEX canned_by_operator ON canned (account_id, operator_id);
