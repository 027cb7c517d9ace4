-- Key rotation keeps a device's addresses and history; this records when its key last changed.
ALTER TABLE devices ADD COLUMN key_rotated_at INTEGER;

-- A disabled user (a leaver) keeps their history; their devices are revoked with them.
ALTER TABLE users ADD COLUMN disabled_at INTEGER;

-- Staff ask for access through a public form; an admin approves or rejects. Nothing secret is
-- stored: the requester keeps a random secret, the store keeps its SHA-256 (request_hash) and
-- the SHA-256 of the enrollment-link secret derived from it (link_hash), so an approval can
-- become a link only the requester can open.
CREATE TABLE access_requests (
    id           INTEGER PRIMARY KEY,
    request_hash TEXT NOT NULL UNIQUE,
    link_hash    TEXT NOT NULL UNIQUE,
    requester    TEXT NOT NULL,
    contact      TEXT NOT NULL DEFAULT '',
    device_name  TEXT NOT NULL,
    reason       TEXT NOT NULL DEFAULT '',
    status       TEXT NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'approved', 'rejected')),
    created_at   INTEGER NOT NULL,
    decided_at   INTEGER,
    decided_by   TEXT,
    link_id      INTEGER REFERENCES enrollment_links(id)
);
CREATE INDEX access_requests_status ON access_requests(status, id);
