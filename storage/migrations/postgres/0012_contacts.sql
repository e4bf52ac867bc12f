-- Contacts (issue 14): the person behind conversations, per account, found by identities.
-- An identity is (kind, value): `phone` (E.164), `email` (normalised), `session` (a widget
-- session id), `bot` ("<channel_id>:<user>"). A `verified` one was proven by a channel (a
-- signed SMS webhook's From, the widget's own session) and names exactly one contact of the
-- account; one somebody typed (userInfo) is a claim, kept unverified on its contact and shown
-- as a possible match, so several contacts may claim the same value.
CREATE TABLE contacts (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id BIGINT NOT NULL,
    name TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (account_id, id)
);
CREATE TABLE contact_identities (
    account_id TEXT NOT NULL,
    contact_id BIGINT NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    verified BOOLEAN NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (account_id, contact_id, kind, value),
    FOREIGN KEY (account_id, contact_id) REFERENCES contacts (account_id, id) ON DELETE CASCADE
);
-- UNIQUE (account_id, kind, value) over proven identities: two first messages from one phone
-- meet here and make one contact.
CREATE UNIQUE INDEX contact_identities_proven ON contact_identities (account_id, kind, value)
    WHERE verified;
-- Possible matches and search: every contact, proven or typed, with a value.
CREATE INDEX contact_identities_by_value ON contact_identities (account_id, kind, value);
-- Every merge an operator made: the absorbed contact's id stays answerable (a repeated merge
-- is recognised), and nothing about who merged what is lost.
CREATE TABLE contact_merges (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    from_id BIGINT NOT NULL,
    into_id BIGINT NOT NULL,
    from_name TEXT NOT NULL,
    operator_id BIGINT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (account_id, from_id)
);
-- The conversation's contact. Set when the conversation is created and moved only by a merge;
-- NULL only on a row a previous release wrote during a rolling update.
ALTER TABLE conversations ADD COLUMN contact_id BIGINT;
CREATE INDEX conversations_by_contact ON conversations (account_id, contact_id, last_activity);

-- Backfill: existing conversations are grouped by what proves their person (an SMS channel's
-- From, then the widget session), each other conversation gets a contact of its own. Typed
-- details (userInfo) link nobody, as for new conversations.
CREATE TEMP TABLE conversation_people AS
SELECT id AS convo_id, account_id, created,
    CASE WHEN channel_id IS NOT NULL AND phone <> '' THEN 'phone'
        WHEN session_id IS NOT NULL THEN 'session' ELSE 'conversation' END AS kind,
    CASE WHEN channel_id IS NOT NULL AND phone <> '' THEN phone
        WHEN session_id IS NOT NULL THEN session_id ELSE id END AS value,
    trim(fname || ' ' || lname) AS name
FROM conversations;
CREATE TEMP TABLE people AS
SELECT account_id, kind, value,
    row_number() OVER (PARTITION BY account_id ORDER BY min(created), kind, value) AS id,
    min(created) AS created, max(name) AS name
FROM conversation_people GROUP BY account_id, kind, value;
INSERT INTO contacts (account_id, id, name, created)
SELECT account_id, id, name, created FROM people;
INSERT INTO contact_identities (account_id, contact_id, kind, value, verified, created)
SELECT account_id, id, kind, value, TRUE, created FROM people WHERE kind <> 'conversation';
UPDATE conversations SET contact_id = people.id
FROM conversation_people JOIN people ON people.account_id = conversation_people.account_id
    AND people.kind = conversation_people.kind AND people.value = conversation_people.value
WHERE conversations.id = conversation_people.convo_id;
INSERT INTO counters (account_id, kind, last_id)
SELECT account_id, 'contact', max(id) FROM people GROUP BY account_id;
DROP TABLE conversation_people;
DROP TABLE people;
