-- Names are compared without case (Anna-iPad and anna-ipad are one device): each named table
-- gets the comparison key of its names, lower case of the NFC form. heimweg fills it for the
-- rows that exist (in Rust, where lower case means what it means for every script), and the
-- next migration makes it unique.
ALTER TABLE devices ADD COLUMN name_key TEXT;
ALTER TABLE users ADD COLUMN name_key TEXT;
ALTER TABLE groups ADD COLUMN name_key TEXT;
ALTER TABLE admins ADD COLUMN name_key TEXT;
ALTER TABLE api_tokens ADD COLUMN name_key TEXT;
