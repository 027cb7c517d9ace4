-- Devices of a group reach other devices only when the group asks for it (off by default, for
-- groups that exist too: the gateway now carves the device pools out of every other group's
-- networks).
ALTER TABLE groups ADD COLUMN peer_to_peer BIGINT NOT NULL DEFAULT 0;
