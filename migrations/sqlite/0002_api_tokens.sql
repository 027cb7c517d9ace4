-- Bearer tokens for automation. Only a SHA-256 of the token is stored: tokens are 256-bit
-- random strings, so a fast hash is enough and a leaked database reveals no usable token.
CREATE TABLE api_tokens (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE,
    -- space-separated scopes, e.g. "devices:read devices:write"
    scopes     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
