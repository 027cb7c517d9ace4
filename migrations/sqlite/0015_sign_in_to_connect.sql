-- Sign in to connect (per group, off by default): the group's devices pass traffic only while
-- their owner has an activation, started on the staff page after a fresh sign-in with a second
-- factor. `sign_in_hours`: how long an activation lets this group's devices through (1-24);
-- 0: no sign-in needed.
ALTER TABLE groups ADD COLUMN sign_in_hours INTEGER NOT NULL DEFAULT 0
    CHECK (sign_in_hours BETWEEN 0 AND 24);
-- An activation: a user's devices in sign-in groups may pass traffic from `starts_at` until
-- `ends_at` (Unix seconds, end exclusive; each group also ends it after its own hours).
-- Ended early (by the staff member or an admin, or when the user is disabled) by setting
-- `ends_at` to that moment; who did it is in the audit log.
CREATE TABLE activations (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id),
    starts_at  INTEGER NOT NULL,
    ends_at    INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    CHECK (ends_at >= starts_at)
);
CREATE INDEX activations_ends ON activations (ends_at);
CREATE INDEX activations_user ON activations (user_id);
-- A sign-in in flight may now also be one to connect (a fresh sign-in at the provider).
-- SQLite changes a CHECK only by copying the table; the sign-ins in flight are kept.
CREATE TABLE oidc_logins_new (
    id_hash       TEXT PRIMARY KEY,
    state         TEXT NOT NULL,
    nonce         TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    purpose       TEXT NOT NULL CHECK (purpose IN ('staff', 'panel', 'connect')),
    next          TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);
INSERT INTO oidc_logins_new (id_hash, state, nonce, pkce_verifier, purpose, next, created_at)
    SELECT id_hash, state, nonce, pkce_verifier, purpose, next, created_at FROM oidc_logins;
DROP TABLE oidc_logins;
ALTER TABLE oidc_logins_new RENAME TO oidc_logins;
CREATE INDEX oidc_logins_created ON oidc_logins (created_at);
