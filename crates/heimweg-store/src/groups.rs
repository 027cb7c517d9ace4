//! Groups and their access policy.

use crate::activations::check_sign_in_hours;
use crate::db::{audit, bump_revision, decode_error, Tx};
use crate::{stored_name, Result, Store, StoreError, MAX_SIGN_IN_HOURS};
use heimweg_control::{Actor, AuditAction, DnsEntry, GroupPolicy, Name, TunnelMode, UsageWindow};
use ipnet::IpNet;

#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub id: i64,
    pub name: Name,
    pub policy: GroupPolicy,
    /// When the group's devices may pass traffic; `None`: at any time.
    pub window: Option<UsageWindow>,
    /// Sign in to connect: the group's devices pass traffic only during their owner's
    /// activation, for at most this many hours after it starts; `None`: no sign-in needed.
    pub sign_in_hours: Option<u8>,
}

/// A change to a group's policy; `None` leaves a part as it is. Applied to the policy as it
/// is inside the write transaction, so two admins changing different parts at once never
/// write each other's old values back.
#[derive(Debug, Clone, Default)]
pub struct GroupPatch {
    pub networks: Option<Vec<IpNet>>,
    pub tunnel: Option<TunnelMode>,
    pub dns: Option<Vec<DnsEntry>>,
    pub peer_to_peer: Option<bool>,
    /// `Some(None)` removes the window.
    pub window: Option<Option<UsageWindow>>,
    /// `Some(None)` turns sign in to connect off.
    pub sign_in_hours: Option<Option<u8>>,
}

impl GroupPatch {
    pub fn is_empty(&self) -> bool {
        self.networks.is_none()
            && self.tunnel.is_none()
            && self.dns.is_none()
            && self.peer_to_peer.is_none()
            && self.window.is_none()
            && self.sign_in_hours.is_none()
    }
}

#[derive(sqlx::FromRow)]
struct GroupRow {
    id: i64,
    name: String,
    allowed_prefixes: String,
    full_tunnel: i64,
    dns: String,
    peer_to_peer: i64,
    window_schedule: String,
    window_zone: String,
    window_closed: String,
    sign_in_hours: i64,
}

const COLUMNS: &str = "id, name, allowed_prefixes, full_tunnel, dns, peer_to_peer,
                       window_schedule, window_zone, window_closed, sign_in_hours";

fn split(s: &str) -> Vec<&str> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

impl TryFrom<GroupRow> for Group {
    type Error = StoreError;
    fn try_from(r: GroupRow) -> Result<Group> {
        let bad = |e: &dyn std::fmt::Display| decode_error("groups", r.id, e);
        let networks = split(&r.allowed_prefixes)
            .into_iter()
            .map(str::parse::<IpNet>)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| bad(&e))?;
        let dns = split(&r.dns)
            .into_iter()
            .map(DnsEntry::from_stored)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| bad(&e))?;
        let tunnel = TunnelMode::from_full(r.full_tunnel != 0);
        let policy =
            GroupPolicy::from_stored(networks, tunnel, dns).peer_to_peer(r.peer_to_peer != 0);
        let window = if r.window_schedule.is_empty() {
            None
        } else {
            Some(
                UsageWindow::new(&r.window_schedule, &r.window_zone, &r.window_closed)
                    .map_err(|e| bad(&e))?,
            )
        };
        let sign_in_hours = match u8::try_from(r.sign_in_hours) {
            Ok(0) => None,
            Ok(h) if h <= MAX_SIGN_IN_HOURS => Some(h),
            _ => return Err(bad(&format!("sign_in_hours {}", r.sign_in_hours))),
        };
        Ok(Group {
            id: r.id,
            name: stored_name("groups", r.id, &r.name)?,
            policy,
            window,
            sign_in_hours,
        })
    }
}

fn join<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// How a policy reads in the audit log.
fn describe(p: &GroupPolicy, window: Option<&UsageWindow>, sign_in: Option<u8>) -> String {
    format!(
        "allowed={} full_tunnel={} dns={} peer_to_peer={} window={} sign_in_hours={}",
        join(p.networks()),
        p.tunnel().is_full(),
        join(p.dns()),
        p.allows_peer_to_peer(),
        window.map_or_else(|| "none".to_string(), ToString::to_string),
        sign_in.unwrap_or(0)
    )
}

/// Inserts a group whose name is free; returns its id.
pub(crate) async fn insert_group(
    tx: &mut Tx<'_>,
    name: &Name,
    policy: &GroupPolicy,
    now: i64,
) -> Result<i64> {
    let taken: Option<i64> = sqlx::query_scalar("SELECT id FROM groups WHERE name_key = $1")
        .bind(name.key())
        .fetch_optional(&mut **tx)
        .await?;
    if taken.is_some() {
        return Err(StoreError::Conflict(format!(
            "a group named {name:?} already exists"
        )));
    }
    Ok(sqlx::query_scalar(
        "INSERT INTO groups (name, name_key, allowed_prefixes, full_tunnel, dns, peer_to_peer,
                             created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(name.as_str())
    .bind(name.key())
    .bind(join(policy.networks()))
    .bind(i64::from(policy.tunnel().is_full()))
    .bind(join(policy.dns()))
    .bind(i64::from(policy.allows_peer_to_peer()))
    .bind(now)
    .fetch_one(&mut **tx)
    .await?)
}

/// The id of the group named `name`, or a clear error.
pub(crate) async fn group_id(tx: &mut Tx<'_>, name: &Name) -> Result<i64> {
    sqlx::query_scalar("SELECT id FROM groups WHERE name_key = $1")
        .bind(name.key())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("there is no group named {name:?}")))
}

async fn group_on(conn: &mut sqlx::AnyConnection, name: &Name) -> Result<Group> {
    sqlx::query_as::<_, GroupRow>(&format!("SELECT {COLUMNS} FROM groups WHERE name_key = $1"))
        .bind(name.key())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("there is no group named {name:?}")))?
        .try_into()
}

impl Store {
    pub async fn create_group(
        &self,
        actor: &Actor,
        name: &Name,
        policy: &GroupPolicy,
        now: i64,
    ) -> Result<Group> {
        let mut tx = self.write(actor).await?;
        let id = insert_group(&mut tx, name, policy, now).await?;
        audit(
            &mut tx,
            now,
            actor,
            AuditAction::GroupCreate,
            name.as_str(),
            &join(policy.networks()),
        )
        .await?;
        bump_revision(&mut tx).await?;
        tx.commit().await?;
        Ok(Group {
            id,
            name: name.clone(),
            policy: policy.clone(),
            window: None,
            sign_in_hours: None,
        })
    }

    /// Changes a group's policy or window; every device in it follows within a second.
    pub async fn update_group(
        &self,
        actor: &Actor,
        name: &Name,
        patch: GroupPatch,
        now: i64,
    ) -> Result<Group> {
        let mut tx = self.write(actor).await?;
        let current = group_on(&mut tx, name).await?;
        let policy = current
            .policy
            .with(patch.networks, patch.tunnel, patch.dns, patch.peer_to_peer)
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let window = patch.window.unwrap_or(current.window);
        let sign_in_hours = patch.sign_in_hours.unwrap_or(current.sign_in_hours);
        if let Some(h) = sign_in_hours {
            check_sign_in_hours(h)?;
        }
        sqlx::query(
            "UPDATE groups SET allowed_prefixes = $1, full_tunnel = $2, dns = $3,
                    peer_to_peer = $4, window_schedule = $5, window_zone = $6,
                    window_closed = $7, sign_in_hours = $8
             WHERE id = $9",
        )
        .bind(join(policy.networks()))
        .bind(i64::from(policy.tunnel().is_full()))
        .bind(join(policy.dns()))
        .bind(i64::from(policy.allows_peer_to_peer()))
        .bind(
            window
                .as_ref()
                .map(UsageWindow::schedule)
                .unwrap_or_default(),
        )
        .bind(
            window
                .as_ref()
                .map(UsageWindow::time_zone)
                .unwrap_or_default(),
        )
        .bind(
            window
                .as_ref()
                .map(UsageWindow::closed_text)
                .unwrap_or_default(),
        )
        .bind(i64::from(sign_in_hours.unwrap_or(0)))
        .bind(current.id)
        .execute(&mut *tx)
        .await?;
        let detail = describe(&policy, window.as_ref(), sign_in_hours);
        audit(
            &mut tx,
            now,
            actor,
            AuditAction::GroupUpdate,
            current.name.as_str(),
            &detail,
        )
        .await?;
        bump_revision(&mut tx).await?;
        tx.commit().await?;
        Ok(Group {
            policy,
            window,
            sign_in_hours,
            ..current
        })
    }

    pub async fn groups(&self) -> Result<Vec<Group>> {
        sqlx::query_as::<_, GroupRow>(&format!("SELECT {COLUMNS} FROM groups ORDER BY name"))
            .fetch_all(&self.reads)
            .await?
            .into_iter()
            .map(Group::try_from)
            .collect()
    }

    pub async fn group(&self, name: &Name) -> Result<Group> {
        group_on(&mut *self.read().await?, name).await
    }
}
