-- Lookups and uniqueness by the comparison key filled after migration 7.
CREATE UNIQUE INDEX devices_by_name_key ON devices(name_key);
CREATE UNIQUE INDEX users_by_name_key ON users(name_key);
CREATE UNIQUE INDEX groups_by_name_key ON groups(name_key);
CREATE UNIQUE INDEX admins_by_name_key ON admins(name_key);
CREATE UNIQUE INDEX api_tokens_by_name_key ON api_tokens(name_key);
