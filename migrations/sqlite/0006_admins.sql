-- Admin accounts of the web panel, their recovery codes and their sessions.
CREATE TABLE admins (
    id             INTEGER PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    -- argon2id PHC string (salt and parameters inside)
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('admin', 'helpdesk')),
    -- TOTP secret sealed with a key derived from the gateway's private key, so a copy of the
    -- database alone does not yield second factors. NULL: no second factor set up.
    totp_sealed    TEXT,
    -- The last accepted TOTP time step: a code is good once.
    totp_last_step INTEGER,
    failed_logins  INTEGER NOT NULL DEFAULT 0,
    locked_until   INTEGER,
    created_at     INTEGER NOT NULL,
    disabled_at    INTEGER
);

-- One-time recovery codes, stored as SHA-256 (they are 79-bit random strings).
CREATE TABLE admin_recovery_codes (
    admin_id  INTEGER NOT NULL REFERENCES admins(id),
    code_hash TEXT NOT NULL,
    used_at   INTEGER,
    PRIMARY KEY (admin_id, code_hash)
);

-- Server-side sessions, so that a logout or a disabled account ends them on every gateway.
-- The cookie holds the random session id; only its SHA-256 is stored.
CREATE TABLE admin_sessions (
    id_hash      TEXT PRIMARY KEY,
    admin_id     INTEGER NOT NULL REFERENCES admins(id),
    -- 'password': the password was right and the second factor is still due; 'full'.
    stage        TEXT NOT NULL CHECK (stage IN ('password', 'full')),
    csrf_token   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX admin_sessions_admin ON admin_sessions(admin_id);

-- A device's page shows its audit trail.
CREATE INDEX audit_log_subject ON audit_log(subject, id);
