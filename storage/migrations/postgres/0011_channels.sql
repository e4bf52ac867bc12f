-- An account's channels (issue 14): where its conversations come in and replies go out. The
-- key names the channel in its public webhook URLs, so it is unguessable and unique across
-- the installation. `settings` is public JSON; `credentials` is a Fernet token sealed with
-- LIVEOP_ENCRYPTION_KEYS (server/crypto.py), so a dump of this table reveals no secret. The
-- health line is written by inbound webhooks and the outbound worker.
CREATE TABLE channels (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id BIGINT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    key TEXT NOT NULL,
    settings TEXT NOT NULL,
    credentials TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    last_inbound DOUBLE PRECISION,
    last_outbound DOUBLE PRECISION,
    last_error TEXT,
    last_error_at DOUBLE PRECISION,
    PRIMARY KEY (account_id, id)
);
CREATE UNIQUE INDEX channels_by_key ON channels (key);
-- The channel a conversation came in on; NULL for web chat and conversations from before
-- channels. A deleted channel leaves its conversations' ids as they were (history).
ALTER TABLE conversations ADD COLUMN channel_id BIGINT;
-- An inbound SMS finds its thread: the latest conversation of this channel with this number.
CREATE INDEX conversations_by_channel_phone ON conversations (account_id, channel_id, phone)
    WHERE channel_id IS NOT NULL;
-- The provider's id for a sent SMS (Twilio's MessageSid): its status callbacks find it.
ALTER TABLE messages ADD COLUMN provider_id TEXT;
CREATE UNIQUE INDEX messages_by_provider_id ON messages (account_id, provider_id)
    WHERE provider_id IS NOT NULL;
