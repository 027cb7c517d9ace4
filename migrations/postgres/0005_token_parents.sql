-- Mirrors migrations/sqlite/0005_token_parents.sql.
ALTER TABLE api_tokens ADD COLUMN parent_id BIGINT REFERENCES api_tokens(id);
