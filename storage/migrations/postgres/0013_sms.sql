-- Phones that opted out of SMS on a channel (issue 14): a customer who texted STOP (or whose
-- provider reported OptOutType=STOP, or refused a send with error 21610) gets no reply from
-- that channel until they text START. `since` is when the opt-out was first recorded. A
-- deleted channel's rows stay: channel ids are never reused, so they name nothing.
CREATE TABLE sms_opt_outs (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    channel_id BIGINT NOT NULL,
    phone TEXT NOT NULL,
    since DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (account_id, channel_id, phone)
);
-- A contact's opt-outs on every channel, by phone.
CREATE INDEX sms_opt_outs_by_phone ON sms_opt_outs (account_id, phone);
-- The pictures of inbound MMS (issue 14), one row per MediaUrl{N}, fetched in the background
-- by whichever process claims it (the outbound table's lease pattern: `attempts` is the
-- fencing token), so a restart loses no fetch. `state`: queued (to fetch), stored (the
-- picture is in the uploads folder at `image_url`), refused (a host that is not the
-- provider's, or a type or size we do not take: no request, or no second one), failed (gave
-- up). A message shows its first stored picture.
CREATE TABLE sms_media (
    convo_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    n INTEGER NOT NULL,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    channel_id BIGINT NOT NULL,
    url TEXT NOT NULL,
    content_type TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    claimed_by TEXT,
    lease_until DOUBLE PRECISION,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    last_error TEXT,
    image_url TEXT,
    created DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (convo_id, seq, n),
    FOREIGN KEY (convo_id, seq) REFERENCES messages (convo_id, seq) ON DELETE CASCADE
);
CREATE INDEX sms_media_due ON sms_media (next_attempt_at) WHERE state = 'queued';
