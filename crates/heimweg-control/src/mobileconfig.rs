//! Apple configuration profiles (`.mobileconfig`) for MDM-managed iPads and Macs.
//!
//! The WireGuard app for iOS and macOS reads a managed VPN payload of subtype
//! `com.wireguard.ios` (macOS: `com.wireguard.macos`) whose `VendorConfig` carries the wg-quick
//! text under `WgQuickConfig`, the key the app migrates into its own keychain storage. The
//! profile holds the device's private key, so it is handed out exactly like the config: once.

use crate::escape_markup;
use rand_core::{OsRng, RngCore};

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

/// Renders a profile installing one tunnel named `tunnel_name` with the wg-quick `config`.
/// `organisation` appears as the profile's publisher, `endpoint` as the server address.
pub fn render(
    tunnel_name: &str,
    config: &str,
    endpoint: &str,
    organisation: &str,
    platform: ApplePlatform,
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
    <string>heimweg.{outer}</string>
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
            <string>heimweg.{outer}.{inner}</string>
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
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_carries_the_config_escaped_with_fresh_uuids() {
        let conf = "[Interface]\nPrivateKey = abc=\n";
        let a = render(
            "Anna & Co <iPad>",
            conf,
            "vpn.example:51820",
            "Stadt",
            ApplePlatform::Ios,
        );
        assert!(a.contains("<string>com.wireguard.ios</string>"));
        assert!(a.contains("<key>WgQuickConfig</key>\n                <string>[Interface]\nPrivateKey = abc=\n</string>"));
        assert!(a.contains("Anna &amp; Co &lt;iPad&gt;"));
        assert!(!a.contains("<iPad>"));
        let b = render("x", conf, "e:1", "o", ApplePlatform::MacOs);
        assert!(b.contains("com.wireguard.macos"));
        let uuid = |s: &str| {
            s.split("<key>PayloadUUID</key>\n    <string>")
                .nth(1)
                .unwrap()[..36]
                .to_string()
        };
        assert_ne!(uuid(&a), uuid(&b), "every profile gets its own identity");
        assert_eq!(uuid(&a).len(), 36);
    }
}
