-- Which token minted a token over the API (NULL: made with the CLI). Revoking a token revokes
-- everything it minted, so a leaked token's offspring do not outlive it.
ALTER TABLE api_tokens ADD COLUMN parent_id INTEGER REFERENCES api_tokens(id);
