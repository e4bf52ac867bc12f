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
