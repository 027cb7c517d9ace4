//! Apple configuration profiles (`.mobileconfig`) for MDM-managed iPads and Macs.
//!
//! The WireGuard app for iOS and macOS reads a managed VPN payload of subtype
//! `com.wireguard.ios` (macOS: `com.wireguard.macos`) whose `VendorConfig` carries the wg-quick
//! text under `WgQuickConfig`, the key the app migrates into its own keychain storage. The
//! profile holds the device's private key, so it is handed out exactly like the config: once.
//!
//! A device's profiles all carry the same `PayloadIdentifier` ([`payload_identifier`]): iOS and
//! macOS replace an installed profile by a new one with the same identifier, so the profile of
//! a rotated key replaces the old one instead of installing a second tunnel beside it. The
//! `PayloadUUID`s are new in every profile, as Apple asks of a changed profile.

use crate::escape_markup;
use crate::keys::PublicKey;
use rand_core::{OsRng, RngCore};
use std::io::Write as _;

/// Which Apple platform's WireGuard app the profile is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplePlatform {
    Ios,
    MacOs,
}

fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02X}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The identifier every profile of one device carries: the gateway (its public key, so two
/// installations never meet) and the device's id, which neither a rename nor a key rotation
/// changes.
pub fn payload_identifier(gateway: &PublicKey, device_id: i64) -> String {
    let gw: String = gateway.as_bytes()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("heimweg.{gw}.device.{device_id}")
}

/// Renders a profile installing one tunnel named `tunnel_name` with the wg-quick `config`.
/// `organisation` appears as the profile's publisher, `endpoint` as the server address,
/// `identifier` (see [`payload_identifier`]) says which installed profile this one replaces.
pub fn render(
    tunnel_name: &str,
    config: &str,
    endpoint: &str,
    organisation: &str,
    platform: ApplePlatform,
    identifier: &str,
) -> String {
    let subtype = match platform {
        ApplePlatform::Ios => "com.wireguard.ios",
        ApplePlatform::MacOs => "com.wireguard.macos",
    };
    let (outer, inner) = (uuid_v4(), uuid_v4());
    let name = escape_markup(tunnel_name);
    let org = escape_markup(organisation);
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
    <key>PayloadDisplayName</key>
    <string>{org} VPN: {name}</string>
    <key>PayloadOrganization</key>
    <string>{org}</string>
    <key>PayloadType</key>
    <string>Configuration</string>
    <key>PayloadVersion</key>
    <integer>1</integer>
    <key>PayloadIdentifier</key>
    <string>{identifier}</string>
    <key>PayloadUUID</key>
    <string>{outer}</string>
    <key>PayloadContent</key>
    <array>
        <dict>
            <key>PayloadDisplayName</key>
            <string>VPN</string>
            <key>PayloadType</key>
            <string>com.apple.vpn.managed</string>
            <key>PayloadVersion</key>
            <integer>1</integer>
            <key>PayloadIdentifier</key>
            <string>{identifier}.vpn</string>
            <key>PayloadUUID</key>
            <string>{inner}</string>
            <key>UserDefinedName</key>
            <string>{name}</string>
            <key>VPNType</key>
            <string>VPN</string>
            <key>VPNSubType</key>
            <string>{subtype}</string>
            <key>VendorConfig</key>
            <dict>
                <key>WgQuickConfig</key>
                <string>{config}</string>
            </dict>
            <key>VPN</key>
            <dict>
                <key>RemoteAddress</key>
                <string>{endpoint}</string>
                <key>AuthenticationMethod</key>
                <string>Password</string>
            </dict>
        </dict>
    </array>
</dict>
</plist>
"#,
        config = escape_markup(config),
        endpoint = escape_markup(endpoint),
        identifier = escape_markup(identifier),
    )
}

/// Profiles for many devices as one zip archive for an MDM: `(file name, profile)` each, the
/// names as given (the caller makes them differ). Stored without compression: a few kilobytes
/// of text each, and every MDM and unzip reads a stored entry.
pub fn zip<P: AsRef<[u8]>>(profiles: &[(String, P)]) -> Result<Vec<u8>, ZipError> {
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .unix_permissions(0o600);
    for (name, profile) in profiles {
        out.start_file(name.as_str(), options)
            .map_err(|e| ZipError(e.to_string()))?;
        out.write_all(profile.as_ref())
            .map_err(|e| ZipError(e.to_string()))?;
    }
    out.finish()
        .map(|c| c.into_inner())
        .map_err(|e| ZipError(e.to_string()))
}

/// The archive could not be written (two entries with one name, or more than zip allows).
#[derive(Debug, thiserror::Error)]
#[error("the profiles could not be put into one archive: {0}")]
pub struct ZipError(String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_carries_the_config_escaped_with_fresh_uuids() {
        let conf = "[Interface]\nPrivateKey = abc=\n";
        let gateway = PublicKey::from_bytes([9; 32]).unwrap();
        let id = payload_identifier(&gateway, 42);
        assert_eq!(id, "heimweg.0909090909090909.device.42");
        let a = render(
            "Anna & Co <iPad>",
            conf,
            "vpn.example:51820",
            "Stadt",
            ApplePlatform::Ios,
            &id,
        );
        assert!(a.contains("<string>com.wireguard.ios</string>"));
        assert!(a.contains("<key>WgQuickConfig</key>\n                <string>[Interface]\nPrivateKey = abc=\n</string>"));
        assert!(a.contains("Anna &amp; Co &lt;iPad&gt;"));
        assert!(!a.contains("<iPad>"));
        let b = render("x", conf, "e:1", "o", ApplePlatform::MacOs, &id);
        assert!(b.contains("com.wireguard.macos"));
        let uuid = |s: &str| {
            s.split("<key>PayloadUUID</key>\n    <string>")
                .nth(1)
                .unwrap()[..36]
                .to_string()
        };
        assert_ne!(uuid(&a), uuid(&b), "every profile gets its own identity");
        assert_eq!(uuid(&a).len(), 36);
        // ... and replaces the device's earlier profile.
        for p in [&a, &b] {
            assert!(p.contains(&format!(
                "<key>PayloadIdentifier</key>\n    <string>{id}</string>"
            )));
            assert!(p.contains(&format!("<string>{id}.vpn</string>")));
        }
        assert_ne!(payload_identifier(&gateway, 43), id);
        assert_ne!(
            payload_identifier(&PublicKey::from_bytes([8; 32]).unwrap(), 42),
            id
        );
    }

    #[test]
    fn the_archive_holds_every_profile_under_its_name() {
        let files = vec![
            ("a=1.mobileconfig".to_string(), "one".to_string()),
            ("b.mobileconfig".to_string(), "two".to_string()),
        ];
        let bytes = zip(&files).unwrap();
        let mut archive = ::zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        assert_eq!(archive.len(), 2);
        for (name, text) in &files {
            let mut entry = archive.by_name(name).unwrap();
            let mut read = String::new();
            std::io::Read::read_to_string(&mut entry, &mut read).unwrap();
            assert_eq!(&read, text);
        }
        let twice = vec![files[0].clone(), files[0].clone()];
        assert!(zip(&twice).is_err(), "one name twice is refused");
    }
}
