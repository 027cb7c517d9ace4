//! heimweg-control: the control plane's model — its typed domain and what a device gets.
//!
//! The domain: names (validated, normalised, compared without case), group policies,
//! scopes, roles and the actor of every change, the states of devices, links and requests,
//! the audit actions, bounded lifetimes. What a device gets: WireGuard keys with strict
//! parsing and secrets that never print, client configs in the subset every stock WireGuard
//! app accepts (iOS, Android, Windows, wg-quick), download file names valid everywhere, QR
//! codes (SVG, PNG, terminal) with the error correction chosen to fit, and Apple
//! `.mobileconfig` profiles for MDM-managed iPads, and the invitation mail that carries a
//! one-time link (never a key).
//!
//! It deliberately does no I/O and knows nothing of the data plane: the store, the service
//! and the API build on it.

pub mod access;
pub mod clientconf;
pub mod directory;
pub mod identity;
pub mod import;
pub mod invitation;
pub mod keys;
pub mod lifecycle;
pub mod mobileconfig;
pub mod name;
pub mod policy;
pub mod qr;
pub mod signing;
pub mod window;

/// Escapes text for HTML and XML (element content and quoted attributes alike): the one
/// escaper for the pages and profiles heimweg renders.
pub fn escape_markup(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// A byte count for people, in binary units ("1.4 GiB"): the one formatter for `heimweg
/// status` and the panel.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub use access::{Actor, RecordedActor, Role, Scope, Scopes, SessionStage};
pub use clientconf::{
    compact_for_qr, config_file_name, ClientConfig, ConfigError, Endpoint, OWN_KEY_STEPS,
    PRIVATE_KEY_PLACEHOLDER,
};
pub use keys::{KeyError, PresharedKey, PrivateKey, PublicKey};
pub use lifecycle::{AuditAction, DeviceStatus, ExpiryDays, LinkHours, LinkStatus, RequestStatus};
pub use name::{Email, Name, NameError};
pub use policy::{DnsEntry, GroupPolicy, PolicyError, TunnelMode};
pub use window::{UsageWindow, WindowError, WindowState};
