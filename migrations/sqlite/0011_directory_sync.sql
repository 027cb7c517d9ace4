-- Directory sync (LDAP / Active Directory). A user is linked to their directory entry by its
-- stable id (objectGUID, entryUUID; never by name or address alone) and gets the heimweg group
-- the group mapping gives them. `disabled_by` says who disabled a user: a sync enables again
-- only those it disabled itself.
ALTER TABLE users ADD COLUMN directory_id TEXT;
ALTER TABLE users ADD COLUMN group_id INTEGER REFERENCES groups(id);
ALTER TABLE users ADD COLUMN disabled_by TEXT;
CREATE UNIQUE INDEX users_directory_id ON users (directory_id);
-- Every run, for the panel and the API: when, at whose request, what it changed or why not.
CREATE TABLE directory_runs (
    id           INTEGER PRIMARY KEY,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER NOT NULL,
    requested_by TEXT NOT NULL,
    -- ok, refused (the safety threshold), failed (the directory could not be read)
    outcome      TEXT NOT NULL,
    entries      INTEGER NOT NULL DEFAULT 0,
    created      INTEGER NOT NULL DEFAULT 0,
    changed      INTEGER NOT NULL DEFAULT 0,
    disabled     INTEGER NOT NULL DEFAULT 0,
    enabled      INTEGER NOT NULL DEFAULT 0,
    skipped      INTEGER NOT NULL DEFAULT 0,
    message      TEXT
);
CREATE INDEX directory_runs_started ON directory_runs (started_at);
