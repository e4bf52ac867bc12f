-- Issue 18: read receipts. The visitor's surfaces number messages by visitor seq, so the
-- operators' read cursor (a message seq, notes included) is kept in that numbering too: the
-- highest visitor seq the operators have been shown, for the visitor's "Seen". Filled from the
-- cursor for the conversations that have one.
ALTER TABLE conversations ADD COLUMN operator_read_visitor_seq INTEGER NOT NULL DEFAULT 0;
UPDATE conversations SET operator_read_visitor_seq = COALESCE(
    (SELECT MAX(m.visitor_seq) FROM messages m
     WHERE m.convo_id = conversations.id AND m.seq <= conversations.operator_read_seq), 0)
WHERE operator_read_seq > 0;
