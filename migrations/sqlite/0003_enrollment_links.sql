-- One-time, expiring enrollment links: an admin prepares a device, the staff member opens the
-- link on the device and receives its config once. Only a SHA-256 of the link's secret is kept.
CREATE TABLE enrollment_links (
    id          INTEGER PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    device_name TEXT NOT NULL,
    group_id    INTEGER NOT NULL REFERENCES groups(id),
    owner       TEXT,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER,
    revoked_at  INTEGER
);
