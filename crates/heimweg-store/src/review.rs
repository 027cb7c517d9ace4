//! The access review (BSI NET.3.3.A5, ORP.4.A3): devices not seen for a long time lose their
//! access, and an auditor's list of who has access to what, since when and by whose decision.

use crate::db::{audit, bump_revision, Arg, Filter};
use crate::devices::devices_where;
use crate::{pool, Device, Result, Store};
use heimweg_control::{Actor, AuditAction, Name, PublicKey};
use std::collections::HashMap;

/// Enough for every device of a city; the review is a whole list, not a page.
const ALL: u32 = 1_000_000;

/// One device with access, and whose decision gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessRow {
    pub device: Device,
    /// The actor that enrolled it, as the audit log records it (`admin:anna`, `link:7:…`).
    pub enrolled_by: Option<String>,
}

/// The conditions of a device that has access at `now`: not revoked, not expired.
fn active(f: &mut Filter, now: i64) {
    let n = f.arg(Arg::Int(now));
    f.cond(format!(
        "d.revoked_at IS NULL AND (d.expires_at IS NULL OR d.expires_at > ${n})"
    ));
}

/// ...and last seen before `seen_before` (see [`Device::last_seen`]: its last handshake, key
/// renewal and enrollment all before it), and not absent since: a device held by an absence
/// (its own or its owner's) could not be seen, and one back from an absence counts from its
/// end, so that parental leave does not end in a revocation.
fn unseen(f: &mut Filter, seen_before: i64) {
    let n = f.arg(Arg::Int(seen_before));
    f.cond(format!(
        "(d.last_handshake_at IS NULL OR d.last_handshake_at < ${n})
         AND (d.key_rotated_at IS NULL OR d.key_rotated_at < ${n}) AND d.created_at < ${n}
         AND NOT EXISTS (SELECT 1 FROM absences a
                         WHERE a.ends_at >= ${n}
                           AND (a.device_id = d.id OR a.user_id = d.owner_id))"
    ));
}

impl Store {
    /// Active devices last seen before `seen_before`, the longest unseen first.
    pub async fn unseen_devices(&self, seen_before: i64, now: i64) -> Result<Vec<Device>> {
        let mut f = Filter::default();
        active(&mut f, now);
        unseen(&mut f, seen_before);
        let mut devices = devices_where(&mut *self.read().await?, f, ALL, 0)
            .await?
            .items;
        devices.sort_by_key(Device::last_seen);
        Ok(devices)
    }

    /// Revokes every active device last seen before `seen_before`, in one transaction, each
    /// audited with `why`. Gateways running the review at once revoke each device once: the
    /// second finds none left.
    pub async fn revoke_unseen(
        &self,
        actor: &Actor,
        seen_before: i64,
        why: &str,
        now: i64,
    ) -> Result<Vec<Name>> {
        let mut tx = self.write(actor).await?;
        let mut f = Filter::default();
        active(&mut f, now);
        unseen(&mut f, seen_before);
        let devices = devices_where(&mut tx, f, ALL, 0).await?.items;
        for d in &devices {
            sqlx::query("UPDATE devices SET revoked_at = $1 WHERE id = $2")
                .bind(now)
                .bind(d.id)
                .execute(&mut *tx)
                .await?;
            pool::release(&mut tx, d.id, now).await?;
            audit(
                &mut tx,
                now,
                actor,
                AuditAction::DeviceRevoke,
                d.name.as_str(),
                why,
            )
            .await?;
        }
        if !devices.is_empty() {
            bump_revision(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(devices.into_iter().map(|d| d.name).collect())
    }

    /// Every device with access at `now`, by group and name, with whose decision enrolled it.
    pub async fn access_review(&self, now: i64) -> Result<Vec<AccessRow>> {
        let mut conn = self.read().await?;
        let mut f = Filter::default();
        active(&mut f, now);
        let devices = devices_where(&mut conn, f, ALL, 0).await?.items;
        // Device names are never reused (a revoked device keeps its name), so the audit
        // entry that created a name is the one that created this device.
        let enrolled: HashMap<String, String> = sqlx::query_as::<_, (String, String)>(
            "SELECT subject, actor FROM audit_log WHERE action = $1 ORDER BY id",
        )
        .bind(AuditAction::DeviceCreate.as_str())
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
        let mut rows: Vec<AccessRow> = devices
            .into_iter()
            .map(|d| AccessRow {
                enrolled_by: enrolled.get(d.name.as_str()).cloned(),
                device: d,
            })
            .collect();
        rows.sort_by(|a, b| {
            (a.device.group.key(), a.device.name.key())
                .cmp(&(b.device.group.key(), b.device.name.key()))
        });
        Ok(rows)
    }
}

impl Store {
    /// Records that `key` was seen used from two places (`addresses`) at `now`: flagged on its
    /// device and audited, at most once an hour per device; with `suspend_hours` the device is
    /// also suspended that long (an absence an admin can end). Returns the device's name when
    /// this was news, `None` when it was flagged within the hour or is not an active device.
    pub async fn flag_shared_key(
        &self,
        key: &PublicKey,
        addresses: &str,
        suspend_hours: u32,
        now: i64,
    ) -> Result<Option<Name>> {
        let mut tx = self.write(&Actor::System).await?;
        let device: Option<(i64, String, Option<i64>)> = sqlx::query_as(
            "SELECT id, name, shared_key_at FROM devices
             WHERE public_key = $1 AND revoked_at IS NULL",
        )
        .bind(key.to_base64())
        .fetch_optional(&mut *tx)
        .await?;
        let Some((id, name, flagged)) = device else {
            return Ok(None);
        };
        if flagged.is_some_and(|at| now - at < SHARED_KEY_QUIET) {
            return Ok(None);
        }
        sqlx::query("UPDATE devices SET shared_key_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let mut detail = format!("used from {addresses} at once");
        if suspend_hours > 0 {
            let until = now + i64::from(suspend_hours) * 3600;
            sqlx::query(
                "INSERT INTO absences (device_id, starts_at, ends_at, reason, created_by, created_at)
                 VALUES ($1, $2, $3, $4, $5, $2)",
            )
            .bind(id)
            .bind(now)
            .bind(until)
            .bind("key used on two devices at once")
            .bind(Actor::System.to_string())
            .execute(&mut *tx)
            .await?;
            detail.push_str(&format!("; suspended for {suspend_hours} h"));
            bump_revision(&mut tx).await?;
        }
        audit(
            &mut tx,
            now,
            &Actor::System,
            AuditAction::DeviceSharedKey,
            &name,
            &detail,
        )
        .await?;
        tx.commit().await?;
        Ok(Some(crate::stored_name("devices", id, &name)?))
    }
}

/// A device's shared key is flagged (and audited) at most once an hour.
const SHARED_KEY_QUIET: i64 = 3600;
