-- Seed 003's widget API with AI assistants (issue 17). A site is a widget: `widget_id` is its
-- public, unguessable id in /api/widgets/{widgetId}/..., `allowed_origins` a JSON list of the
-- origins whose pages may call those endpoints, `assistant_id` its default assistant.
ALTER TABLE sites ADD COLUMN widget_id TEXT NOT NULL DEFAULT '';
ALTER TABLE sites ADD COLUMN logo_url TEXT NOT NULL DEFAULT '';
ALTER TABLE sites ADD COLUMN assistant_id BIGINT;
ALTER TABLE sites ADD COLUMN allowed_origins TEXT NOT NULL DEFAULT '[]';
ALTER TABLE sites ADD COLUMN voice_number TEXT NOT NULL DEFAULT '';
-- 128 random bits, as new sites get from the code (storage/models.py new_widget_id).
UPDATE sites SET widget_id = replace(gen_random_uuid()::text, '-', '');
CREATE UNIQUE INDEX sites_by_widget_id ON sites (widget_id);
-- Widget tokens: several per site at once (rotation), stored as SHA-256 hashes only; revoking
-- one deletes its row, so the next request with it is refused.
CREATE TABLE widget_tokens (
    account_id TEXT NOT NULL,
    id BIGINT NOT NULL,
    site_id BIGINT NOT NULL,
    token_hash TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (account_id, id),
    FOREIGN KEY (account_id, site_id) REFERENCES sites (account_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX widget_tokens_by_hash ON widget_tokens (token_hash);
-- An account's AI assistants: an OpenAI-compatible Chat Completions endpoint. `credentials`
-- is the API key sealed with LIVEOP_ENCRYPTION_KEYS (server/crypto.py), as channels' are.
CREATE TABLE assistants (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id BIGINT NOT NULL,
    name TEXT NOT NULL,
    base_url TEXT NOT NULL,
    model TEXT NOT NULL,
    credentials TEXT NOT NULL,
    system_prompt TEXT NOT NULL,
    max_tokens BIGINT NOT NULL,
    monthly_token_budget BIGINT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (account_id, id)
);
-- An assistant's reply is the bot's message with the model and the tokens it cost; the
-- month's spend of an assistant is the sum over its replies (the budget check's index).
ALTER TABLE messages ADD COLUMN assistant_id BIGINT;
ALTER TABLE messages ADD COLUMN model TEXT;
ALTER TABLE messages ADD COLUMN tokens BIGINT;
CREATE INDEX messages_by_assistant ON messages (account_id, assistant_id, created)
    WHERE assistant_id IS NOT NULL;
-- Widget analytics (seed 003's track): events a widget reports (`source` 'widget', bounded
-- per session) and those the server records itself ('server': messages sent through the
-- widget chat, hand-overs), by UTC day (days since 1970-01-01) of their arrival.
CREATE TABLE widget_events (
    account_id TEXT NOT NULL,
    id BIGINT NOT NULL,
    site_id BIGINT NOT NULL,
    session_id TEXT NOT NULL,
    source TEXT NOT NULL,
    event TEXT NOT NULL,
    occurred DOUBLE PRECISION,
    metadata TEXT NOT NULL,
    day BIGINT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (account_id, id),
    FOREIGN KEY (account_id, site_id) REFERENCES sites (account_id, id) ON DELETE CASCADE
);
CREATE INDEX widget_events_by_session ON widget_events (account_id, site_id, session_id);
CREATE INDEX widget_events_by_day ON widget_events (account_id, site_id, day);
-- When the conversation became a qualified lead: the visitor gave an email or phone in the
-- widget or chat window, or an operator marked it (conversation:qualified, once).
ALTER TABLE conversations ADD COLUMN qualified_at DOUBLE PRECISION;
