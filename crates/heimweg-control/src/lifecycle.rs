//! The states things pass through, the actions the audit log records, and the lifetimes
//! people may give them.

use std::fmt;

/// A value from outside (a query parameter, a stored column) that names no known state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} is not one of {allowed}")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
    pub allowed: &'static str,
}

/// Declares a closed set of named states: `as_str`, `Display`, `FromStr` and `ALL`.
macro_rules! named_states {
    (@list $first:literal $(, $rest:literal)*) => {
        concat!($first $(, ", ", $rest)*)
    };
    ($(#[$meta:meta])* $ty:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $ty { $($(#[$vmeta])* $variant),+ }

        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];
            /// The names, as an error message lists them.
            const ALLOWED: &'static str = named_states!(@list $($text),+);

            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),+ }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<$ty, UnknownValue> {
                match s {
                    $($text => Ok($ty::$variant),)+
                    _ => Err(UnknownValue {
                        what: $what,
                        value: s.chars().take(60).collect(),
                        allowed: $ty::ALLOWED,
                    }),
                }
            }
        }
    };
}

named_states!(
    /// A device's state at a moment: the one definition the API, panel, CLI and reconciler use.
    DeviceStatus, "status" {
        Active = "active",
        Expired = "expired",
        Revoked = "revoked",
    }
);

impl DeviceStatus {
    /// The state of a device with these times at `now`.
    pub fn at(revoked_at: Option<i64>, expires_at: Option<i64>, now: i64) -> DeviceStatus {
        if revoked_at.is_some() {
            DeviceStatus::Revoked
        } else if expires_at.is_some_and(|e| e <= now) {
            DeviceStatus::Expired
        } else {
            DeviceStatus::Active
        }
    }
}

named_states!(
    /// An access request's state.
    RequestStatus, "status" {
        Pending = "pending",
        Approved = "approved",
        Rejected = "rejected",
    }
);

named_states!(
    /// An enrollment link's state.
    LinkStatus, "status" {
        Open = "open",
        Used = "used",
        Revoked = "revoked",
        Expired = "expired",
    }
);

impl LinkStatus {
    pub fn at(used_at: Option<i64>, revoked_at: Option<i64>, expires_at: i64, now: i64) -> Self {
        if used_at.is_some() {
            LinkStatus::Used
        } else if revoked_at.is_some() {
            LinkStatus::Revoked
        } else if expires_at <= now {
            LinkStatus::Expired
        } else {
            LinkStatus::Open
        }
    }
}

named_states!(
    /// What the audit log records.
    AuditAction, "audit action" {
        Init = "init",
        SettingsEndpoint = "settings.endpoint",
        SettingsReview = "settings.review",
        DeviceCreate = "device.create",
        DeviceUpdate = "device.update",
        DeviceRotate = "device.rotate",
        DeviceRevoke = "device.revoke",
        DeviceSharedKey = "device.shared_key",
        GroupCreate = "group.create",
        GroupUpdate = "group.update",
        AbsenceCreate = "absence.create",
        AbsenceEnd = "absence.end",
        ActivationStart = "activation.start",
        ActivationEnd = "activation.end",
        UserCreate = "user.create",
        UserDisable = "user.disable",
        UserEnable = "user.enable",
        UserUpdate = "user.update",
        UserSignIn = "user.sign_in",
        UserTotpOn = "user.totp_on",
        UserTotpReset = "user.totp_reset",
        UserLock = "user.lock",
        DirectorySync = "directory.sync",
        LinkCreate = "link.create",
        LinkRevoke = "link.revoke",
        LinkRemind = "link.remind",
        RequestCreate = "request.create",
        RequestApprove = "request.approve",
        RequestReject = "request.reject",
        TokenCreate = "token.create",
        TokenRevoke = "token.revoke",
        AdminCreate = "admin.create",
        AdminDisable = "admin.disable",
        AdminLogin = "admin.login",
        AdminRole = "admin.role",
        AdminLock = "admin.lock",
        AdminUnlock = "admin.unlock",
        AdminPassword = "admin.password",
        AdminTotpOn = "admin.totp_on",
        AdminTotpOff = "admin.totp_off",
    }
);

/// A whole number within bounds, with the unit in its name: how long something lasts.
macro_rules! bounded {
    ($(#[$meta:meta])* $ty:ident, $unit_secs:expr, $min:expr, $max:expr, $field:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $ty(u32);

        impl $ty {
            pub const MIN: u32 = $min;
            pub const MAX: u32 = $max;

            pub fn new(n: u32) -> Result<$ty, OutOfRange> {
                if ($min..=$max).contains(&n) {
                    Ok($ty(n))
                } else {
                    Err(OutOfRange { field: $field, min: $min, max: $max, value: i64::from(n) })
                }
            }

            pub fn get(self) -> u32 {
                self.0
            }

            pub fn as_secs(self) -> i64 {
                i64::from(self.0) * $unit_secs
            }
        }
    };
}

/// A number outside what a field allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} must be {min} to {max}, not {value}")]
pub struct OutOfRange {
    pub field: &'static str,
    pub min: u32,
    pub max: u32,
    pub value: i64,
}

bounded!(
    /// Days until a device stops working: at least one (ending it now is a revocation), at
    /// most ten years.
    ExpiryDays, 86_400, 1, 3650, "expires_in_days"
);

bounded!(
    /// Hours an enrollment link (or an approved request) stays open: 72 unless said
    /// otherwise, at most 30 days.
    LinkHours, 3600, 1, 720, "expires_in_hours"
);

impl Default for LinkHours {
    fn default() -> LinkHours {
        LinkHours(72)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_refuse_the_unknown() {
        for s in AuditAction::ALL {
            assert_eq!(s.as_str().parse::<AuditAction>().unwrap(), *s);
        }
        for s in DeviceStatus::ALL {
            assert_eq!(s.as_str().parse::<DeviceStatus>().unwrap(), *s);
        }
        let err = "enabled".parse::<DeviceStatus>().unwrap_err().to_string();
        assert!(err.contains("active, expired, revoked"), "{err}");
        assert_eq!(DeviceStatus::at(None, Some(10), 10), DeviceStatus::Expired);
        assert_eq!(DeviceStatus::at(Some(5), None, 10), DeviceStatus::Revoked);
        assert_eq!(LinkStatus::at(None, None, 11, 10), LinkStatus::Open);
    }

    #[test]
    fn lifetimes_are_bounded() {
        assert!(ExpiryDays::new(0).is_err());
        assert_eq!(ExpiryDays::new(2).unwrap().as_secs(), 172_800);
        assert!(ExpiryDays::new(3651).is_err());
        assert_eq!(LinkHours::default().get(), 72);
        assert_eq!(
            LinkHours::new(721).unwrap_err().to_string(),
            "expires_in_hours must be 1 to 720, not 721"
        );
    }
}
