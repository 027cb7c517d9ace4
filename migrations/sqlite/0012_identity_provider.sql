-- Sign-in through the city's identity provider (OpenID Connect). A user or panel account is
-- linked to the provider's subject: its stable id for the person, never the e-mail address.
ALTER TABLE users ADD COLUMN oidc_subject TEXT;
CREATE UNIQUE INDEX users_oidc_subject ON users (oidc_subject);
ALTER TABLE admins ADD COLUMN oidc_subject TEXT;
CREATE UNIQUE INDEX admins_oidc_subject ON admins (oidc_subject);
-- A sign-in between the redirect to the provider and its answer (ten minutes at most). In the
-- store, so that the answer may reach another gateway; keyed by the hash of a cookie of the
-- browser that started it, so that no other browser can finish it. Used once.
CREATE TABLE oidc_logins (
    id_hash       TEXT PRIMARY KEY,
    state         TEXT NOT NULL,
    nonce         TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    purpose       TEXT NOT NULL CHECK (purpose IN ('staff', 'panel')),
    next          TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE INDEX oidc_logins_created ON oidc_logins (created_at);
-- A staff member's session on their own page (/my): ends with the user (disabled by an admin
-- or the directory sync). `groups`: the heimweg groups their sign-in allows, one per line.
CREATE TABLE staff_sessions (
    id_hash    TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id),
    csrf_token TEXT NOT NULL,
    groups     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX staff_sessions_user ON staff_sessions (user_id);
