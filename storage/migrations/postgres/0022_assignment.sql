-- Issue 18: a team may assign each new conversation routed to it to its next online operator,
-- round robin (`auto_assign`), passing over operators who already own `assign_limit` open or
-- active conversations (0: no limit). `last_assigned` is the round robin's cursor, the operator
-- it assigned last (0: none yet); it is read and moved with the team's row locked, in the
-- transaction that creates the conversation, so processes sharing the store take turns.
ALTER TABLE teams ADD COLUMN auto_assign BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE teams ADD COLUMN assign_limit BIGINT NOT NULL DEFAULT 0;
ALTER TABLE teams ADD COLUMN last_assigned BIGINT NOT NULL DEFAULT 0;
-- What an operator owns and has not finished: counted for the limit at every assignment.
CREATE INDEX IF NOT EXISTS conversations_owned_open ON conversations (account_id, operator_id)
    WHERE status IN ('open', 'active');
-- Personal canned responses: an operator's own (`operator_id`), beside the account's (NULL).
-- They go with their operator.
ALTER TABLE canned ADD COLUMN operator_id BIGINT;
ALTER TABLE canned ADD FOREIGN KEY (account_id, operator_id)
    REFERENCES operators (account_id, id) ON DELETE CASCADE;
CREATE INDEX canned_by_operator ON canned (account_id, operator_id);
