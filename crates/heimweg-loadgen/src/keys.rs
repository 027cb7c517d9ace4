//! The simulated devices' keys and tunnel addresses, derived from a seed so that the server can
//! be configured (`keys`) with exactly the devices a later run simulates.

use anyhow::{Context, Result};
use boringtun::x25519::{PublicKey, StaticSecret};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::net::Ipv4Addr;

/// Device `i`'s static key for `seed`.
pub fn device_secret(seed: u64, i: u32) -> StaticSecret {
    let mut h = Sha256::new();
    h.update(b"heimweg-loadgen device\0");
    h.update(seed.to_le_bytes());
    h.update(i.to_le_bytes());
    StaticSecret::from(<[u8; 32]>::from(h.finalize()))
}

/// Device `i`'s tunnel address: 10.64.0.0/10, one /32 each (room for four million devices).
pub fn device_address(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 64, 0, 1)) + i)
}

/// Standard base64, as `wg` writes keys.
pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Prints the peer sections (`wg setconf` format) of devices `0 .. devices` for `seed`.
pub fn print(devices: u32, seed: u64) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for i in 0..devices {
        let public = PublicKey::from(&device_secret(seed, i));
        writeln!(
            out,
            "[Peer]\nPublicKey = {}\nAllowedIPs = {}/32\n",
            b64(public.as_bytes()),
            device_address(i)
        )?;
    }
    out.flush()?;
    Ok(())
}

/// The server's public key from its base64 form (`--server-key`).
pub fn parse_server_key(s: &str) -> Result<PublicKey> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .context("--server-key is not base64")?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("--server-key must be 32 bytes"))?;
    Ok(PublicKey::from(bytes))
}
