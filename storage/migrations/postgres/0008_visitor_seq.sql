-- Visitor seqs: the chat window numbers the messages it shows 1, 2, 3, ... with no gaps where
-- private notes lie between them, so that no seq tells the visitor how many notes exist or
-- where. A note has none (NULL); `visitor_last_seq` is the conversation's highest, as
-- `last_seq` is for message seqs. Existing messages are numbered here in seq order.
ALTER TABLE messages ADD COLUMN visitor_seq BIGINT;
ALTER TABLE conversations ADD COLUMN visitor_last_seq BIGINT NOT NULL DEFAULT 0;
UPDATE messages SET visitor_seq = numbered.visitor_seq
FROM (
    SELECT convo_id, seq, row_number() OVER (PARTITION BY convo_id ORDER BY seq) AS visitor_seq
    FROM messages WHERE NOT private
) AS numbered
WHERE messages.convo_id = numbered.convo_id AND messages.seq = numbered.seq;
UPDATE conversations SET visitor_last_seq = counted.visitor_last_seq
FROM (
    SELECT convo_id, max(visitor_seq) AS visitor_last_seq FROM messages
    WHERE visitor_seq IS NOT NULL GROUP BY convo_id
) AS counted
WHERE conversations.id = counted.convo_id;
-- The chat window reads a conversation by visitor seq; unique, as the engine numbers them
-- (notes' NULLs do not collide). On a large database it can be built beforehand with CREATE
-- UNIQUE INDEX CONCURRENTLY, after the columns and their backfill (docs/deploy.md).
CREATE UNIQUE INDEX IF NOT EXISTS messages_visitor_seq ON messages (convo_id, visitor_seq);
-- During a rolling update, processes of the previous release still write messages, without a
-- visitor seq: this numbers them (after the conversation's newest, which the unique index
-- finds at once; the writer holds the conversation's row lock) so the chat window shows them
-- too. Today's engine numbers its own messages and the trigger does nothing for them. To be
-- dropped a release later.
CREATE FUNCTION messages_visitor_seq_for_old_writers() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT coalesce(max(visitor_seq), 0) + 1 INTO NEW.visitor_seq
    FROM messages WHERE convo_id = NEW.convo_id;
    UPDATE conversations SET visitor_last_seq = NEW.visitor_seq WHERE id = NEW.convo_id;
    RETURN NEW;
END
$$;
CREATE TRIGGER messages_visitor_seq_for_old_writers BEFORE INSERT ON messages
FOR EACH ROW WHEN (NEW.visitor_seq IS NULL AND NOT NEW.private)
EXECUTE FUNCTION messages_visitor_seq_for_old_writers();
