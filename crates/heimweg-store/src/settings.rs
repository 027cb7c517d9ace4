//! Gateway-wide settings, read and written as one typed struct (the table behind it holds
//! key/value text), the first-run defaults, and the change revision.

use crate::db::{audit, bump_revision, decode_error};
use crate::{Result, Store, StoreError};
use heimweg_control::{Actor, AuditAction, Endpoint, GroupPolicy, Name, TunnelMode};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::Ipv6Addr;
use std::time::Duration;

/// How long a released address rests before another device may get it, so that a revoked
/// device's lingering traffic or cached DNS never reaches its successor.
pub const DEFAULT_ADDRESS_GRACE: Duration = Duration::from_secs(24 * 3600);

/// Gateway-wide settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// host:port clients dial; `None` until an admin sets it.
    pub endpoint: Option<Endpoint>,
    pub pool_v4: Ipv4Net,
    pub pool_v6: Ipv6Net,
    /// The MTU client configs carry.
    pub mtu: u16,
    pub address_grace: Duration,
    /// The access review: devices not seen for this many days lose their access (0: never).
    pub review_unseen_days: u32,
    /// When the review's setting last changed (0: never): a device first due through a
    /// change gets its week's notice from then.
    pub review_changed_at: i64,
    /// A device whose key is used from two places at once is suspended for this many hours
    /// (0: only flagged).
    pub shared_key_suspend_hours: u32,
}

/// A change to the settings; `None` leaves a field as it is. The pools and the MTU are set at
/// first start and never change: addresses are stored as offsets into the pools.
#[derive(Debug, Clone, Default)]
pub struct SettingsChange {
    pub endpoint: Option<Endpoint>,
    pub address_grace: Option<Duration>,
    pub review_unseen_days: Option<u32>,
    pub shared_key_suspend_hours: Option<u32>,
}

/// Reads the settings on `conn`: inside a transaction, the values that will commit with it.
pub(crate) async fn settings_on(conn: &mut sqlx::AnyConnection) -> Result<Settings> {
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT key, value FROM settings")
        .fetch_all(&mut *conn)
        .await?;
    let get = |k: &str| {
        rows.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let missing = || StoreError::NotFound("the gateway is not initialised".into());
    let parse = |k: &'static str| -> Result<&str> { get(k).ok_or_else(missing) };
    let bad = |k: &'static str, e: &dyn std::fmt::Display| {
        decode_error("settings", 0, format_args!("{k}: {e}"))
    };
    Ok(Settings {
        endpoint: get("endpoint")
            .map(|v| v.parse::<Endpoint>().map_err(|e| bad("endpoint", &e)))
            .transpose()?,
        pool_v4: parse("pool_v4")?.parse().map_err(|e| bad("pool_v4", &e))?,
        pool_v6: parse("pool_v6")?.parse().map_err(|e| bad("pool_v6", &e))?,
        mtu: get("mtu").map_or(Ok(1280), |v| v.parse().map_err(|e| bad("mtu", &e)))?,
        address_grace: Duration::from_secs(
            get("address_grace_s").map_or(Ok(DEFAULT_ADDRESS_GRACE.as_secs()), |v| {
                v.parse().map_err(|e| bad("address_grace_s", &e))
            })?,
        ),
        review_unseen_days: get("review_unseen_days").map_or(Ok(0), |v| {
            v.parse().map_err(|e| bad("review_unseen_days", &e))
        })?,
        review_changed_at: get("review_changed_at").map_or(Ok(0), |v| {
            v.parse().map_err(|e| bad("review_changed_at", &e))
        })?,
        shared_key_suspend_hours: get("shared_key_suspend_hours").map_or(Ok(0), |v| {
            v.parse().map_err(|e| bad("shared_key_suspend_hours", &e))
        })?,
    })
}

async fn put(tx: &mut crate::db::Tx<'_>, key: &str, value: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO settings (key, value) VALUES ($1, $2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )
    .bind(key)
    .bind(value)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    pub async fn settings(&self) -> Result<Settings> {
        settings_on(&mut *self.read().await?).await
    }

    /// Applies a change to the settings; the data plane and new configs follow.
    pub async fn update_settings(
        &self,
        actor: &Actor,
        change: &SettingsChange,
        now: i64,
    ) -> Result<Settings> {
        let mut tx = self.write(actor).await?;
        if let Some(endpoint) = &change.endpoint {
            put(&mut tx, "endpoint", &endpoint.to_string()).await?;
            let text = endpoint.to_string();
            audit(
                &mut tx,
                now,
                actor,
                AuditAction::SettingsEndpoint,
                &text,
                "",
            )
            .await?;
        }
        if let Some(grace) = change.address_grace {
            put(&mut tx, "address_grace_s", &grace.as_secs().to_string()).await?;
        }
        if let Some(days) = change.review_unseen_days {
            put(&mut tx, "review_unseen_days", &days.to_string()).await?;
            put(&mut tx, "review_changed_at", &now.to_string()).await?;
            let detail = if days == 0 {
                "off".to_string()
            } else {
                format!("devices unseen for {days} days lose their access")
            };
            audit(
                &mut tx,
                now,
                actor,
                AuditAction::SettingsReview,
                "access review",
                &detail,
            )
            .await?;
        }
        if let Some(hours) = change.shared_key_suspend_hours {
            put(&mut tx, "shared_key_suspend_hours", &hours.to_string()).await?;
            let detail = match hours {
                0 => "a key used on two devices is flagged".to_string(),
                h => format!("a key used on two devices is flagged and suspended for {h} h"),
            };
            audit(
                &mut tx,
                now,
                actor,
                AuditAction::SettingsReview,
                "shared keys",
                &detail,
            )
            .await?;
        }
        bump_revision(&mut tx).await?;
        let settings = settings_on(&mut tx).await?;
        tx.commit().await?;
        Ok(settings)
    }

    /// Overwrites a raw setting; only for tests that need, say, a tiny pool.
    #[doc(hidden)]
    pub async fn set_setting_for_tests(&self, key: &str, value: &str) -> Result<()> {
        let mut tx = self.write(&Actor::System).await?;
        put(&mut tx, key, value).await?;
        tx.commit().await?;
        Ok(())
    }

    /// First-run defaults: address pools (a random ULA /64, as RFC 4193 asks), MTU, and a
    /// group `default` that reaches the gateway's own addresses only. Returns false if already
    /// initialised.
    pub async fn init_defaults(&self, ula_global_id: [u8; 5], now: i64) -> Result<bool> {
        let mut tx = self.write(&Actor::System).await?;
        let exists: Option<String> =
            sqlx::query_scalar("SELECT value FROM settings WHERE key = 'pool_v4'")
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_some() {
            return Ok(false);
        }
        let g = ula_global_id;
        let pool_v6 = Ipv6Net::new(
            Ipv6Addr::new(
                0xfd00 | u16::from(g[0]),
                u16::from_be_bytes([g[1], g[2]]),
                u16::from_be_bytes([g[3], g[4]]),
                0,
                0,
                0,
                0,
                0,
            ),
            64,
        )
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let pool_v4: Ipv4Net = "10.77.0.0/16".parse().expect("literal");
        for (k, v) in [
            ("pool_v4", pool_v4.to_string()),
            ("pool_v6", pool_v6.to_string()),
            ("mtu", "1280".to_string()),
            (
                "address_grace_s",
                DEFAULT_ADDRESS_GRACE.as_secs().to_string(),
            ),
            ("revision", "0".to_string()),
        ] {
            put(&mut tx, k, &v).await?;
        }
        // The default group reaches the gateway's own addresses and nothing else (a ping to
        // the gateway tells a device it is connected); the admin names the city's networks.
        let gateway = [
            IpNet::from(std::net::IpAddr::V4(crate::pool::v4_at(&pool_v4, 1))),
            IpNet::from(std::net::IpAddr::V6(crate::pool::v6_at(&pool_v6, 1))),
        ];
        let policy = GroupPolicy::new(gateway.to_vec(), TunnelMode::Split, vec![])
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let default = Name::new("default").expect("a valid name");
        crate::groups::insert_group(&mut tx, &default, &policy, now).await?;
        audit(
            &mut tx,
            now,
            &Actor::System,
            AuditAction::Init,
            "gateway",
            "",
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Increases with every change; the reconciler compares it to what it applied last.
    pub async fn revision(&self) -> Result<i64> {
        let v: Option<String> =
            sqlx::query_scalar("SELECT value FROM settings WHERE key = 'revision'")
                .fetch_optional(&self.reads)
                .await?;
        match v {
            None => Ok(0),
            Some(v) => v
                .parse()
                .map_err(|e| decode_error("settings", 0, format_args!("revision: {e}"))),
        }
    }
}
