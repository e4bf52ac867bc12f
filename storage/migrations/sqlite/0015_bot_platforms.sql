-- Who is in control of a conversation (issue 16): the bot answering, the operators' queue, a
-- human, or nobody once it is closed. The engine keeps it; existing rows take what their
-- status and mode already say.
ALTER TABLE conversations ADD COLUMN control TEXT NOT NULL DEFAULT 'bot';
UPDATE conversations SET control = CASE
    WHEN status = 'resolved' THEN 'closed'
    WHEN mode = 'operator' THEN 'human'
    ELSE 'bot' END;
-- A bot platform's user (the Operator API's userId) whose conversation this is, with what the
-- platform handed over: attributes operators see, hidden ones kept for integrations only, and
-- its customData, each a JSON object.
ALTER TABLE conversations ADD COLUMN bot_user_id TEXT;
ALTER TABLE conversations ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}';
ALTER TABLE conversations ADD COLUMN hidden_attributes TEXT NOT NULL DEFAULT '{}';
ALTER TABLE conversations ADD COLUMN custom_data TEXT NOT NULL DEFAULT '{}';
-- The platform's calls find the user's conversation: the newest of this channel and user.
CREATE INDEX conversations_by_bot_user ON conversations (account_id, channel_id, bot_user_id)
    WHERE bot_user_id IS NOT NULL;
-- The employee a bot platform shows beside an operator's answers.
ALTER TABLE operators ADD COLUMN avatar_url TEXT NOT NULL DEFAULT '';
-- What to post for a bot platform's event, rendered when the change committed; NULL for SMS
-- and email, whose senders render the message themselves.
ALTER TABLE outbound ADD COLUMN payload TEXT;
