-- Invitations by mail. A queued mail names its link; the link's secret is made when the mail is
-- first claimed for sending and kept only sealed (ChaCha20-Poly1305, the gateway's sealing key)
-- until the mail is sent, fails for good or is cancelled: a retry sends the same link.
CREATE TABLE invitation_mails (
    id              INTEGER PRIMARY KEY,
    link_id         INTEGER NOT NULL REFERENCES enrollment_links(id),
    recipient       TEXT NOT NULL,
    reminder        INTEGER NOT NULL DEFAULT 0,
    -- queued, sending, sent, failed, cancelled
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- every claim counts up: a sender whose lease ran out can no longer change the mail
    claims          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,
    sealed_secret   TEXT,
    message_id      TEXT,
    last_error      TEXT,
    queued_by       TEXT NOT NULL,
    queued_at       INTEGER NOT NULL,
    sent_at         INTEGER
);
CREATE INDEX invitation_mails_due ON invitation_mails (state, next_attempt_at);
CREATE INDEX invitation_mails_link ON invitation_mails (link_id, id);
-- When the link's page was first opened, the device its redemption made (for "connected"), and
-- the comparison key of its owner's name (heimweg fills it for the links there are), so that a
-- link finds its person's mail address.
ALTER TABLE enrollment_links ADD COLUMN opened_at INTEGER;
ALTER TABLE enrollment_links ADD COLUMN device_id INTEGER REFERENCES devices(id);
ALTER TABLE enrollment_links ADD COLUMN owner_key TEXT;
CREATE INDEX enrollment_links_owner_key ON enrollment_links (owner_key);
