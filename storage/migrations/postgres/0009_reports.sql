-- As sqlite/0009, in PostgreSQL types. Reports and satisfaction ratings (issue 19).

-- The visitor's rating of a resolution, and which resolution (its resolved_at) it rates.
ALTER TABLE conversations ADD COLUMN rating SMALLINT;
ALTER TABLE conversations ADD COLUMN rating_comment TEXT NOT NULL DEFAULT '';
ALTER TABLE conversations ADD COLUMN rated_resolved_at DOUBLE PRECISION;
-- A site may turn the rating question off.
ALTER TABLE sites ADD COLUMN ask_rating BOOLEAN NOT NULL DEFAULT TRUE;

-- What reports need of the messages, kept on the conversation as messages arrive (the engine
-- sets them), so no report reads the messages table; filled here for existing conversations.
ALTER TABLE conversations ADD COLUMN asked_at DOUBLE PRECISION;
ALTER TABLE conversations ADD COLUMN replied_at DOUBLE PRECISION;
ALTER TABLE conversations ADD COLUMN replied_by BIGINT;
ALTER TABLE conversations ADD COLUMN bot_answered BOOLEAN NOT NULL DEFAULT FALSE;

-- Reports select a period by when conversations opened, were resolved and were rated
-- (docs/benchmarks.md, "Reports results": measured with and without these).
CREATE INDEX conversations_created ON conversations (account_id, created);
CREATE INDEX conversations_resolved ON conversations (account_id, resolved_at)
    WHERE resolved_at IS NOT NULL;
CREATE INDEX conversations_rated ON conversations (account_id, rated_resolved_at)
    WHERE rating IS NOT NULL;

-- The backfill: the last statements of this file (bench/reports_bench.py runs them alone).
UPDATE conversations SET
    asked_at = (SELECT min(m.created) FROM messages m
                WHERE m.convo_id = conversations.id AND m.sender = 'visitor'),
    bot_answered = EXISTS (SELECT 1 FROM messages m
                           WHERE m.convo_id = conversations.id AND m.sender = 'bot');
UPDATE conversations SET
    replied_at = (SELECT m.created FROM messages m
                  WHERE m.convo_id = conversations.id AND m.sender = 'operator' AND NOT m.private
                  AND m.seq > (SELECT min(v.seq) FROM messages v WHERE v.convo_id = conversations.id
                  AND v.sender = 'visitor') ORDER BY m.seq LIMIT 1),
    replied_by = (SELECT m.operator_id FROM messages m
                  WHERE m.convo_id = conversations.id AND m.sender = 'operator' AND NOT m.private
                  AND m.seq > (SELECT min(v.seq) FROM messages v WHERE v.convo_id = conversations.id
                  AND v.sender = 'visitor') ORDER BY m.seq LIMIT 1)
    WHERE asked_at IS NOT NULL;
