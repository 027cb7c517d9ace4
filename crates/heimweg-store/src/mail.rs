//! The invitation mail queue. A queued mail names an enrollment link; the link gets its secret
//! when the mail is first claimed for sending (the secret made at the link's creation was
//! never handed out), and the store keeps that secret only sealed, until the mail is sent,
//! fails for good or is cancelled, so that a retry (or a gateway taking over an abandoned
//! claim) sends the same working link. Claims are leases: a sender that dies leaves its
//! claims to be taken again once the lease ends, by itself after a restart or by another
//! gateway.

use crate::db::{audit, Tx};
use crate::{stored_name, Result, Store, StoreError};
use heimweg_control::name::name_key;
use heimweg_control::{Actor, AuditAction, LinkStatus, Name};

/// Where a queued mail is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailState {
    Queued,
    Sending,
    Sent,
    Failed,
    Cancelled,
}

impl MailState {
    pub fn as_str(self) -> &'static str {
        match self {
            MailState::Queued => "queued",
            MailState::Sending => "sending",
            MailState::Sent => "sent",
            MailState::Failed => "failed",
            MailState::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Option<MailState> {
        [
            MailState::Queued,
            MailState::Sending,
            MailState::Sent,
            MailState::Failed,
            MailState::Cancelled,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }
}

/// A fresh secret for a link whose mail is claimed: its hash for the link, and the secret
/// sealed for the queue.
#[derive(Debug, Clone)]
pub struct FreshSecret {
    pub token_hash: String,
    pub sealed: String,
    /// The mail's Message-ID, kept for its retries.
    pub message_id: String,
}

/// A mail claimed for sending: everything the mail says.
#[derive(Debug, Clone)]
pub struct ClaimedMail {
    pub id: i64,
    pub recipient: String,
    pub reminder: bool,
    pub user: Name,
    pub device: Name,
    pub group: Name,
    pub expires_at: i64,
    /// The link's secret, sealed.
    pub sealed_secret: String,
    pub message_id: String,
    /// This claim's attempt, from 1.
    pub attempt: i64,
    /// The claim's number: what marks it sent, failed or handed back must still hold it.
    pub claim: i64,
}

/// One invitation as the rollout's list shows it: the link, its latest mail, how far the
/// person got.
#[derive(Debug, Clone, PartialEq)]
pub struct InvitationStatus {
    pub link_id: i64,
    pub user: Option<Name>,
    pub email: Option<String>,
    pub device: Name,
    pub group: Name,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub opened_at: Option<i64>,
    /// The latest mail for the link, if any: its state, attempts, error, when sent.
    pub mail: Option<MailSummary>,
    /// The device's newest handshake, once the link made one.
    pub last_handshake_at: Option<i64>,
}

impl InvitationStatus {
    pub fn link_status(&self, now: i64) -> LinkStatus {
        LinkStatus::at(self.used_at, self.revoked_at, self.expires_at, now)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MailSummary {
    pub state: MailState,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub sent_at: Option<i64>,
    pub reminder: bool,
}

/// What a reminder round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemindOutcome {
    /// Mails queued (each with its link reopened until the new expiry).
    pub queued: usize,
    /// Unused links whose person has no mail address: to be reminded another way.
    pub without_address: usize,
    /// Unused links with a mail still on its way: kept open until the new expiry, no second
    /// mail.
    pub pending: usize,
}

/// The queue's figures, for the operations listener.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailCounts {
    pub queued: i64,
    pub sending: i64,
    pub sent: i64,
    pub failed: i64,
    pub cancelled: i64,
}

/// Queues the invitation mail for a link just made, inside the caller's transaction.
pub(crate) async fn queue_mail(
    tx: &mut Tx<'_>,
    actor: &Actor,
    link_id: i64,
    recipient: &str,
    reminder: bool,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO invitation_mails (link_id, recipient, reminder, state, next_attempt_at,
                                       queued_by, queued_at)
         VALUES ($1, $2, $3, 'queued', $4, $5, $4)",
    )
    .bind(link_id)
    .bind(recipient)
    .bind(i64::from(reminder))
    .bind(now)
    .bind(actor.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct DueRow {
    id: i64,
    recipient: String,
    reminder: i64,
    sealed_secret: Option<String>,
    message_id: Option<String>,
    attempts: i64,
    claims: i64,
    link_id: i64,
    device_name: String,
    group_name: String,
    owner: Option<String>,
    expires_at: i64,
    used_at: Option<i64>,
    revoked_at: Option<i64>,
    owner_disabled: Option<i64>,
}

const DUE: &str = "SELECT m.id, m.recipient, m.reminder, m.sealed_secret, m.message_id, m.attempts,
        m.claims, l.id AS link_id, l.device_name, g.name AS group_name, l.owner, l.expires_at, l.used_at,
        l.revoked_at, u.disabled_at AS owner_disabled
     FROM invitation_mails m
     JOIN enrollment_links l ON l.id = m.link_id
     JOIN groups g ON g.id = l.group_id
     LEFT JOIN users u ON u.name_key = l.owner_key
     WHERE (m.state = 'queued' AND m.next_attempt_at <= $1)
        OR (m.state = 'sending' AND m.lease_until <= $1)
     ORDER BY m.next_attempt_at, m.id LIMIT $2";

impl Store {
    /// Claims up to `fresh.len()` mails that are due (queued and due, or claimed by a sender
    /// whose lease ran out) for `lease_secs`. A mail whose link was used, withdrawn or expired
    /// meanwhile, or whose person left, is cancelled instead. A link without a sealed secret
    /// gets one from `fresh` (its old secret stops working). One transaction.
    pub async fn claim_mails(
        &self,
        now: i64,
        lease_secs: i64,
        fresh: Vec<FreshSecret>,
    ) -> Result<Vec<ClaimedMail>> {
        let mut tx = self.write(&Actor::System).await?;
        let due = sqlx::query_as::<_, DueRow>(DUE)
            .bind(now)
            .bind(i64::try_from(fresh.len()).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await?;
        let mut fresh = fresh.into_iter();
        let mut out = Vec::with_capacity(due.len());
        for row in due {
            let reason = match cancel_reason(&row, now) {
                Some(r) => Some(r),
                None if device_exists(&mut tx, &row.device_name).await? => {
                    Some("the device was set up another way before its mail went out")
                }
                None => None,
            };
            if let Some(reason) = reason {
                sqlx::query(
                    "UPDATE invitation_mails SET state = 'cancelled', sealed_secret = NULL,
                            lease_until = NULL, last_error = $2 WHERE id = $1",
                )
                .bind(row.id)
                .bind(reason)
                .execute(&mut *tx)
                .await?;
                continue;
            }
            let (sealed, message_id) = match (row.sealed_secret.clone(), row.message_id.clone()) {
                (Some(s), Some(m)) => (s, m),
                _ => {
                    let f = fresh.next().ok_or_else(|| {
                        StoreError::Invalid("a fresh secret for every claim".into())
                    })?;
                    sqlx::query("UPDATE enrollment_links SET token_hash = $1 WHERE id = $2")
                        .bind(&f.token_hash)
                        .bind(row.link_id)
                        .execute(&mut *tx)
                        .await?;
                    (f.sealed, f.message_id)
                }
            };
            sqlx::query(
                "UPDATE invitation_mails SET state = 'sending', lease_until = $2,
                        attempts = attempts + 1, claims = claims + 1, sealed_secret = $3,
                        message_id = $4
                 WHERE id = $1",
            )
            .bind(row.id)
            .bind(now + lease_secs)
            .bind(&sealed)
            .bind(&message_id)
            .execute(&mut *tx)
            .await?;
            let id = row.id;
            match claimed(row, sealed, message_id) {
                Ok(mail) => out.push(mail),
                // A row that cannot be read fails alone, logged: it must not hold up the
                // queue behind it round after round.
                Err(e) => {
                    tracing::error!(mail = id, error = %e, "an invitation mail cannot be read");
                    sqlx::query(
                        "UPDATE invitation_mails SET state = 'failed', sealed_secret = NULL,
                                lease_until = NULL, last_error = $2 WHERE id = $1",
                    )
                    .bind(id)
                    .bind(format!("cannot be read: {e}"))
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    /// The mail went out: its sealed secret is dropped. Nothing changes unless `claim` is
    /// still the mail's claim (a sender whose lease ran out has lost it).
    pub async fn mail_sent(&self, id: i64, claim: i64, now: i64) -> Result<()> {
        let mut tx = self.write(&Actor::System).await?;
        sqlx::query(
            "UPDATE invitation_mails SET state = 'sent', sent_at = $2, sealed_secret = NULL,
                    lease_until = NULL, last_error = NULL
             WHERE id = $1 AND state = 'sending' AND claims = $3",
        )
        .bind(id)
        .bind(now)
        .bind(claim)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A sending attempt failed: the mail waits until `retry_at` (keeping its link's secret,
    /// so that the retry sends the same link), or, without one, has failed for good. Only
    /// while `claim` holds.
    pub async fn mail_failed(
        &self,
        id: i64,
        claim: i64,
        error: &str,
        retry_at: Option<i64>,
    ) -> Result<()> {
        let mut tx = self.write(&Actor::System).await?;
        let error: String = error.chars().take(500).collect();
        let query = match retry_at {
            Some(at) => sqlx::query(
                "UPDATE invitation_mails SET state = 'queued', next_attempt_at = $3,
                        lease_until = NULL, last_error = $2
                 WHERE id = $1 AND state = 'sending' AND claims = $4",
            )
            .bind(id)
            .bind(&error)
            .bind(at)
            .bind(claim),
            None => sqlx::query(
                "UPDATE invitation_mails SET state = 'failed', sealed_secret = NULL,
                        lease_until = NULL, last_error = $2
                 WHERE id = $1 AND state = 'sending' AND claims = $3",
            )
            .bind(id)
            .bind(&error)
            .bind(claim),
        };
        query.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Hands claims (mail, claim) back unsent, due at once, the attempt not counted: a sender
    /// that stops, the rest of a batch after a server failure, or (with `error`) the mail a
    /// server failure met, which is no fault of the mail's. Only claims that still hold.
    pub async fn release_mails(&self, claims: &[(i64, i64)], error: Option<&str>) -> Result<()> {
        if claims.is_empty() {
            return Ok(());
        }
        let error: Option<String> = error.map(|e| e.chars().take(500).collect());
        let mut tx = self.write(&Actor::System).await?;
        for (id, claim) in claims {
            sqlx::query(
                "UPDATE invitation_mails SET state = 'queued', lease_until = NULL,
                        attempts = attempts - 1, last_error = COALESCE($3, last_error)
                 WHERE id = $1 AND state = 'sending' AND claims = $2",
            )
            .bind(id)
            .bind(claim)
            .bind(error.as_deref())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// When the next mail falls due: a queued one's next attempt or a claim's lease end.
    pub async fn next_mail_due(&self) -> Result<Option<i64>> {
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(CASE WHEN state = 'queued' THEN next_attempt_at ELSE lease_until END)
             FROM invitation_mails WHERE state IN ('queued', 'sending')",
        )
        .fetch_one(&self.reads)
        .await?;
        Ok(next)
    }

    /// How many mails are in each state.
    pub async fn mail_counts(&self) -> Result<MailCounts> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM invitation_mails GROUP BY state")
                .fetch_all(&self.reads)
                .await?;
        let mut c = MailCounts::default();
        for (state, n) in rows {
            match MailState::parse(&state) {
                Some(MailState::Queued) => c.queued = n,
                Some(MailState::Sending) => c.sending = n,
                Some(MailState::Sent) => c.sent = n,
                Some(MailState::Failed) => c.failed = n,
                Some(MailState::Cancelled) => c.cancelled = n,
                None => return Err(StoreError::corrupt("invitation_mails", 0, "unknown state")),
            }
        }
        Ok(c)
    }

    /// Queues a reminder for every unused, unwithdrawn link (of `group`, or of every group)
    /// whose owner is not disabled and has a mail address, unless a mail for it is still on
    /// its way; each such link stays open until `expires_at` at least. Audited per link.
    pub async fn queue_reminders(
        &self,
        actor: &Actor,
        group: Option<&Name>,
        now: i64,
        expires_at: i64,
    ) -> Result<RemindOutcome> {
        let mut tx = self.write(actor).await?;
        let group_id = match group {
            Some(g) => Some(crate::groups::group_id(&mut tx, g).await?),
            None => None,
        };
        let rows: Vec<(i64, String, Option<String>, i64)> = sqlx::query_as(
            "SELECT l.id, l.device_name, u.email,
                    (SELECT COUNT(*) FROM invitation_mails m
                     WHERE m.link_id = l.id AND m.state IN ('queued', 'sending'))
             FROM enrollment_links l JOIN users u ON u.name_key = l.owner_key
             WHERE l.used_at IS NULL AND l.revoked_at IS NULL AND u.disabled_at IS NULL
               AND ($1 < 0 OR l.group_id = $1)
             ORDER BY l.id DESC",
        )
        .bind(group_id.unwrap_or(-1))
        .fetch_all(&mut *tx)
        .await?;
        let mut out = RemindOutcome::default();
        // Newest first: a device invited twice (a list imported again after its link expired)
        // is reminded through its newest link only.
        let mut seen = std::collections::HashSet::new();
        for (link_id, device, email, pending) in rows {
            if !seen.insert(name_key(&device)) || device_exists(&mut tx, &device).await? {
                continue;
            }
            let Some(email) = email else {
                out.without_address += 1;
                continue;
            };
            // A mail still on its way carries the link: it only needs the link to stay open.
            sqlx::query(
                "UPDATE enrollment_links SET expires_at = $2 WHERE id = $1 AND expires_at < $2",
            )
            .bind(link_id)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
            if pending > 0 {
                out.pending += 1;
                continue;
            }
            queue_mail(&mut tx, actor, link_id, &email, true, now).await?;
            audit(
                &mut tx,
                now,
                actor,
                AuditAction::LinkRemind,
                &device,
                &email,
            )
            .await?;
            out.queued += 1;
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Every invitation (link) with an owner, newest first, with its latest mail and how far
    /// its person got.
    pub async fn invitations(&self, limit: u32) -> Result<Vec<InvitationStatus>> {
        sqlx::query_as::<_, InvitationRow>(
            "SELECT l.id, l.owner, u.email, l.device_name, g.name AS group_name, l.expires_at,
                    l.used_at, l.revoked_at, l.opened_at, d.last_handshake_at,
                    m.state, m.attempts, m.last_error, m.sent_at, m.reminder
             FROM enrollment_links l
             JOIN groups g ON g.id = l.group_id
             LEFT JOIN users u ON u.name_key = l.owner_key
             LEFT JOIN devices d ON d.id = l.device_id
             LEFT JOIN invitation_mails m ON m.id =
                 (SELECT MAX(m2.id) FROM invitation_mails m2 WHERE m2.link_id = l.id)
             WHERE l.owner IS NOT NULL
             ORDER BY l.id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.reads)
        .await?
        .into_iter()
        .map(InvitationStatus::try_from)
        .collect()
    }
}

/// Whether a device of this name exists (any state: a revoked one's name is taken too).
async fn device_exists(tx: &mut Tx<'_>, device_name: &str) -> Result<bool> {
    let found: Option<i64> = sqlx::query_scalar("SELECT id FROM devices WHERE name_key = $1")
        .bind(name_key(device_name))
        .fetch_optional(&mut **tx)
        .await?;
    Ok(found.is_some())
}

/// Why a due mail is not to be sent any more, if it is not.
fn cancel_reason(row: &DueRow, now: i64) -> Option<&'static str> {
    if row.used_at.is_some() {
        Some("the link was used before its mail went out")
    } else if row.revoked_at.is_some() {
        Some("the link was withdrawn")
    } else if row.owner_disabled.is_some() {
        Some("the person was disabled")
    } else if row.expires_at <= now {
        Some("the link expired before its mail could be sent")
    } else {
        None
    }
}

fn claimed(row: DueRow, sealed_secret: String, message_id: String) -> Result<ClaimedMail> {
    let id = row.link_id;
    let owner = row
        .owner
        .ok_or_else(|| StoreError::corrupt("enrollment_links", id, "a mailed link has no owner"))?;
    Ok(ClaimedMail {
        id: row.id,
        recipient: row.recipient,
        reminder: row.reminder != 0,
        user: stored_name("enrollment_links", id, &owner)?,
        device: stored_name("enrollment_links", id, &row.device_name)?,
        group: stored_name("enrollment_links", id, &row.group_name)?,
        expires_at: row.expires_at,
        sealed_secret,
        message_id,
        attempt: row.attempts + 1,
        claim: row.claims + 1,
    })
}

#[derive(sqlx::FromRow)]
struct InvitationRow {
    id: i64,
    owner: Option<String>,
    email: Option<String>,
    device_name: String,
    group_name: String,
    expires_at: i64,
    used_at: Option<i64>,
    revoked_at: Option<i64>,
    opened_at: Option<i64>,
    last_handshake_at: Option<i64>,
    state: Option<String>,
    attempts: Option<i64>,
    last_error: Option<String>,
    sent_at: Option<i64>,
    reminder: Option<i64>,
}

impl TryFrom<InvitationRow> for InvitationStatus {
    type Error = StoreError;
    fn try_from(r: InvitationRow) -> Result<InvitationStatus> {
        let mail = match r.state {
            None => None,
            Some(s) => Some(MailSummary {
                state: MailState::parse(&s).ok_or_else(|| {
                    StoreError::corrupt("invitation_mails", r.id, "unknown state")
                })?,
                attempts: r.attempts.unwrap_or(0),
                last_error: r.last_error,
                sent_at: r.sent_at,
                reminder: r.reminder.unwrap_or(0) != 0,
            }),
        };
        Ok(InvitationStatus {
            link_id: r.id,
            user: r
                .owner
                .map(|o| stored_name("enrollment_links", r.id, &o))
                .transpose()?,
            email: r.email,
            device: stored_name("enrollment_links", r.id, &r.device_name)?,
            group: stored_name("enrollment_links", r.id, &r.group_name)?,
            expires_at: r.expires_at,
            used_at: r.used_at,
            revoked_at: r.revoked_at,
            opened_at: r.opened_at,
            mail,
            last_handshake_at: r.last_handshake_at,
        })
    }
}
