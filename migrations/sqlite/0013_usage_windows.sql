-- Access in time (BSI NET.3.3.A5: VPN access only at the times it is needed).
-- A group's usage window: a weekly schedule ("Mon-Fri 06:00-20:00"), its time zone (an IANA
-- name; empty: Europe/Berlin) and the dates it stays closed. An empty schedule: no window.
ALTER TABLE groups ADD COLUMN window_schedule TEXT NOT NULL DEFAULT '';
ALTER TABLE groups ADD COLUMN window_zone TEXT NOT NULL DEFAULT '';
ALTER TABLE groups ADD COLUMN window_closed TEXT NOT NULL DEFAULT '';
-- An absence (ORP.4.A6/A7): a user's or a device's access suspended from `starts_at` to
-- `ends_at` (Unix seconds, end exclusive); it comes back by itself. Ended early by deleting
-- the row (audited).
CREATE TABLE absences (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER REFERENCES users(id),
    device_id  INTEGER REFERENCES devices(id),
    starts_at  INTEGER NOT NULL,
    ends_at    INTEGER NOT NULL,
    reason     TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    CHECK ((user_id IS NULL) <> (device_id IS NULL)),
    CHECK (ends_at > starts_at)
);
CREATE INDEX absences_ends ON absences (ends_at);
