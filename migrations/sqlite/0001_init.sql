-- heimweg schema, version 1 (SQLite). Times are Unix seconds (UTC).

-- Gateway-wide settings: public endpoint, address pools, DNS, MTU and the change revision the
-- reconciler watches.
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- A group carries the access policy of its devices.
CREATE TABLE groups (
    id               INTEGER PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    -- comma-separated CIDRs the devices may reach (the gateway enforces them)
    allowed_prefixes TEXT NOT NULL,
    full_tunnel      INTEGER NOT NULL DEFAULT 0,
    -- comma-separated resolver IPs and search domains for the client config
    dns              TEXT NOT NULL DEFAULT '',
    created_at       INTEGER NOT NULL
);

CREATE TABLE users (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    email      TEXT,
    created_at INTEGER NOT NULL
);

CREATE TABLE devices (
    id                INTEGER PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    public_key        TEXT NOT NULL UNIQUE,
    -- shared with the gateway, so it has to be stored; never the device's private key
    preshared_key     TEXT,
    group_id          INTEGER NOT NULL REFERENCES groups(id),
    owner_id          INTEGER REFERENCES users(id),
    -- offsets of the device's addresses inside the IPv4 and IPv6 pools
    ipv4_offset       INTEGER NOT NULL,
    ipv6_offset       INTEGER NOT NULL,
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER,
    revoked_at        INTEGER,
    last_handshake_at INTEGER,
    last_endpoint     TEXT
);
CREATE INDEX devices_group ON devices(group_id);

-- Every address ever handed out. The primary key makes a double allocation impossible, even
-- with several writers; released addresses wait out a grace period before reuse.
CREATE TABLE addresses (
    family      INTEGER NOT NULL,  -- 4 or 6
    pool_offset INTEGER NOT NULL,
    device_id   INTEGER REFERENCES devices(id),
    released_at INTEGER,
    PRIMARY KEY (family, pool_offset)
);
CREATE INDEX addresses_released ON addresses(family, released_at);

CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail  TEXT NOT NULL DEFAULT ''
);
