-- Two-way email (issue 15). One row per email conversation: the reply+TOKEN@ local part we
-- put in Reply-To (128 random bits, unique across the installation, lower case because mail
-- systems may fold case), the short tag in our subjects, and the contact's normalised address,
-- which header- and subject-based threading require the sender to be.
CREATE TABLE email_threads (
    convo_id TEXT NOT NULL PRIMARY KEY REFERENCES conversations (id) ON DELETE CASCADE,
    account_id TEXT NOT NULL,
    channel_id BIGINT NOT NULL,
    token TEXT NOT NULL,
    tag TEXT NOT NULL,
    customer TEXT NOT NULL,
    subject TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL
);
CREATE UNIQUE INDEX email_threads_by_token ON email_threads (token);
CREATE UNIQUE INDEX email_threads_by_tag ON email_threads (account_id, channel_id, tag);
-- Every mail a channel received or sent, by the source's identity for it (Message-ID, or the
-- IMAP UID or the bytes' digest when it has none): a mail seen again is a no-op. `outcome`
-- says what became of it (a message, or why not: automatic, bounce, our own, refused); the
-- raw original (base64) stays for operators, the message it became is `msg_id`.
CREATE TABLE emails (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    channel_id BIGINT NOT NULL,
    source_key TEXT NOT NULL,
    direction TEXT NOT NULL,
    message_id TEXT,
    outcome TEXT NOT NULL,
    reason TEXT,
    sender TEXT NOT NULL,
    convo_id TEXT,
    msg_id TEXT,
    original TEXT,
    html TEXT,
    created DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (account_id, channel_id, source_key)
);
CREATE INDEX emails_by_message_id ON emails (account_id, channel_id, message_id)
    WHERE message_id IS NOT NULL;
CREATE INDEX emails_by_msg ON emails (account_id, msg_id) WHERE msg_id IS NOT NULL;
-- Addresses a delivery-status report said cannot receive mail: replies to them fail at once
-- instead of bouncing again.
CREATE TABLE email_undeliverable (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    address TEXT NOT NULL,
    reason TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (account_id, address)
);
-- An email channel's IMAP mailbox: the (UIDVALIDITY, last UID) imported so far, and the lease
-- that lets one process follow the mailbox at a time (holder and until when). NULL
-- uidvalidity: never connected, so the first connection imports only mail from then on.
CREATE TABLE imap_mailboxes (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    channel_id BIGINT NOT NULL,
    uidvalidity BIGINT,
    last_uid BIGINT NOT NULL,
    holder TEXT NOT NULL,
    lease_until DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (account_id, channel_id)
);
