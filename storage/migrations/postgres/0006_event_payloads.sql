-- Faithful replay: each event keeps the payloads it was sent with, written in the transaction
-- that commits it, so a client that reconnects receives the same bytes it would have received
-- live (not the conversation as it is now). `data` is what the account's operators receive,
-- `visitor_data` what the conversation's visitor receives (NULL when the visitor does not see
-- the event). Both are NULL on events written before this step; those replay as before, from
-- the rows as they are now.
ALTER TABLE events ADD COLUMN data TEXT;
ALTER TABLE events ADD COLUMN visitor_data TEXT;
-- The visitor's replay reads a conversation's messages with their events. One event announces
-- each message (NULL msg_seq does not collide), which this also holds the engine to. On a large
-- database it can be built beforehand with CREATE UNIQUE INDEX CONCURRENTLY (docs/deploy.md).
CREATE UNIQUE INDEX IF NOT EXISTS events_message ON events (account_id, convo_id, msg_seq);
