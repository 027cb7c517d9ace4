-- One key, one device (BSI ORP.4.A14: no two people under one identity): when the gateway last
-- saw a device's key used from two places at once (its endpoint alternating between two
-- addresses, a config copied onto a second device). Audited as device.shared_key.
ALTER TABLE devices ADD COLUMN shared_key_at INTEGER;
