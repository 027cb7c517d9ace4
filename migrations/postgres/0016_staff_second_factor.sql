-- Mirrors migrations/sqlite/0016_staff_second_factor.sql.
-- Sign in with the directory password and a second factor heimweg keeps: for cities without an
-- identity provider, staff sign in on their own page by an LDAP bind as themselves and a TOTP
-- code. The TOTP secret is set up at the first sign-in and kept sealed with the gateway's key
-- (as the panel's); `totp_last_step` makes each code count once across every gateway;
-- `failed_codes` wrong codes in a row (after a right password) lock the sign-in until
-- `locked_until`. An admin's reset deletes the row: the next sign-in sets up a new factor.
CREATE TABLE staff_factors (
    user_id        BIGINT PRIMARY KEY REFERENCES users(id),
    totp_sealed    TEXT,
    totp_last_step BIGINT,
    failed_codes   BIGINT NOT NULL DEFAULT 0,
    locked_until   BIGINT,
    created_at     BIGINT NOT NULL
);
