//! Invitations by mail: the queue's operations (reminders, the rollout's list) and the
//! [`Mailer`] that sends what is due over SMTP.
//!
//! Sending is at least once, never silently lost: a mail is claimed for a lease, sent, then
//! marked sent. A sender stopped in an orderly way finishes the mail it is sending and hands
//! its other claims back; one killed between the server's acceptance and the mark leaves a
//! claim that is sent again (the same link and Message-ID) when its lease ends.

use crate::smtp::{Client, Outcome, Transport};
use crate::{generate_token, secrets, token_hash, Caller, Result, Service, ServiceError};
use heimweg_control::invitation::InvitationMail;
use heimweg_control::{LinkHours, Name, Scope};
use heimweg_store::{ClaimedMail, FreshSecret, InvitationStatus, MailCounts, RemindOutcome};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::Message;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// How the connection to the mail server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// STARTTLS, required (never a fallback to plain text); port 587 by default.
    StartTls,
    /// TLS from the first byte; port 465 by default.
    Tls,
    /// No TLS: only for a relay on this machine (127.0.0.1, ::1, localhost).
    None,
}

impl std::str::FromStr for SmtpSecurity {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "starttls" => Ok(SmtpSecurity::StartTls),
            "tls" => Ok(SmtpSecurity::Tls),
            "none" => Ok(SmtpSecurity::None),
            _ => Err(format!("{s:?}: starttls, tls or none")),
        }
    }
}

impl SmtpSecurity {
    pub fn default_port(self) -> u16 {
        match self {
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        }
    }
}

/// Where and how invitations are mailed (the settings file's `HEIMWEG_SMTP_*` and
/// `HEIMWEG_MAIL_*`).
#[derive(Clone)]
pub struct MailSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// Certificates (PEM) of the CA that signed the server's certificate, besides the public
    /// roots: a city's own CA.
    pub ca_pem: Option<Vec<u8>>,
    /// User and password, if the server wants them.
    pub credentials: Option<(String, String)>,
    /// The sender, e.g. `VPN der Stadt <vpn@stadt.example>`.
    pub from: String,
    /// The address staff reach the gateway's pages at: links start with it.
    pub public_url: String,
    /// Whom to call, named in every mail.
    pub helpdesk: Option<String>,
    /// Mails a minute at most (a mail server's own limit, e.g. 30 for Exchange Online).
    pub per_minute: u32,
    /// The name this gateway greets the server with (EHLO).
    pub hello_name: Option<String>,
}

impl std::fmt::Debug for MailSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("user", &self.credentials.as_ref().map(|c| &c.0))
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

/// How long a claim lasts: longer than a batch takes at the slowest pace plus one SMTP
/// timeout.
const LEASE_SECS: i64 = 120;
/// A batch still unsent this long after its claim goes back: a mail started now ends (or
/// times out twice over) within the lease, so no claim outlives its lease in this sender.
const LEASE_MARGIN: Duration = Duration::from_secs(60);
/// A mail that could not be sent this many times has failed for good.
pub const MAX_ATTEMPTS: i64 = 10;
/// How often the queue is looked at when nothing wakes the sender: mails queued by another
/// process (the command line, another gateway) go out within this.
const POLL: Duration = Duration::from_secs(10);

/// When a mail that failed on its `attempt`th try is tried again: 1, 2, 4, … minutes, at
/// most an hour.
pub fn retry_delay_secs(attempt: i64) -> i64 {
    let doublings = u32::try_from(attempt.clamp(1, 7) - 1).unwrap_or(0);
    (60_i64 << doublings).min(3600)
}

/// What one round of sending did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SendRound {
    pub sent: usize,
    /// Failed for good (the server refused the recipient, or too many attempts).
    pub failed: usize,
    /// To be tried again later.
    pub deferred: usize,
    /// Claims handed back unsent (the sender was asked to stop).
    pub released: usize,
}

/// Sends the queue's due mails; one per gateway that has mail settings.
pub struct Mailer {
    service: Service,
    client: Client,
    settings: MailSettings,
    from: Mailbox,
    wake: Arc<Notify>,
    /// One mail per tick; made on first use, inside the runtime.
    pace: Option<tokio::time::Interval>,
    /// The wait after a server failure, doubled each time (30 s to 10 min), reset by a
    /// success.
    trouble_backoff: Duration,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// `localhost` or a loopback address: where plain text may go (a mail relay, a directory).
pub(crate) fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Mailer {
    /// A sender for `service`'s queue. Refuses settings that would send in the clear over a
    /// network or cannot be parsed.
    pub fn new(service: Service, settings: MailSettings) -> Result<Mailer> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            ServiceError::Invalid(format!("mail settings: {what}: {e}"))
        };
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|e| bad("HEIMWEG_MAIL_FROM", &e))?;
        if settings.per_minute == 0 {
            return Err(bad("HEIMWEG_MAIL_PER_MINUTE", &"must be at least 1"));
        }
        service.sealer()?;
        let tls = || -> Result<TlsParameters> {
            let mut b = TlsParameters::builder(settings.host.clone());
            if let Some(pem) = &settings.ca_pem {
                for cert in pem_certificates(pem) {
                    let cert = Certificate::from_pem(&cert)
                        .map_err(|e| bad("HEIMWEG_SMTP_CA_FILE", &e))?;
                    b = b.add_root_certificate(cert);
                }
            }
            b.build_rustls().map_err(|e| bad("TLS", &e))
        };
        let transport = match settings.security {
            SmtpSecurity::StartTls => Transport::StartTls(tls()?),
            SmtpSecurity::Tls => Transport::Tls(tls()?),
            SmtpSecurity::None if is_loopback(&settings.host) => Transport::Plain,
            SmtpSecurity::None => {
                return Err(bad(
                    "HEIMWEG_SMTP_SECURITY",
                    &"none is only for a relay on this machine; use starttls or tls",
                ))
            }
        };
        let client = Client::new(
            settings.host.clone(),
            settings.port,
            transport,
            settings
                .credentials
                .as_ref()
                .map(|(u, p)| Credentials::new(u.clone(), p.clone())),
            settings
                .hello_name
                .clone()
                .map_or_else(ClientId::default, ClientId::Domain),
        );
        Ok(Mailer {
            service,
            client,
            settings,
            from,
            wake: Arc::new(Notify::new()),
            pace: None,
            trouble_backoff: Duration::ZERO,
        })
    }

    /// What wakes this sender when a mail is queued in this process.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Mails claimed per transaction: what the pace sends in about ten seconds, so that a
    /// batch ends well within its lease.
    fn batch(&self) -> usize {
        (self.settings.per_minute as usize / 6).clamp(1, 50)
    }

    /// Sends what is due now, until nothing is or `stop` says so, or the server fails.
    pub async fn send_due(&mut self, stop: &watch::Receiver<bool>) -> Result<SendRound> {
        let mut round = SendRound::default();
        loop {
            let claimed = self.claim_batch().await?;
            if claimed.is_empty() || !self.send_batch(claimed, stop, &mut round).await? {
                return Ok(round);
            }
        }
    }

    /// Claims what is due, with a fresh sealed secret ready for each mail that needs one.
    async fn claim_batch(&self) -> Result<Vec<ClaimedMail>> {
        let sealer = self.service.sealer()?;
        let fresh = (0..self.batch())
            .map(|_| {
                let secret = generate_token();
                FreshSecret {
                    token_hash: token_hash(&secret),
                    sealed: sealer.seal(secret.as_bytes()),
                    message_id: format!(
                        "<{}@{}>",
                        secrets::random_token(18),
                        self.from.email.domain()
                    ),
                }
            })
            .collect();
        Ok(self
            .service
            .store
            .claim_mails(self.service.now(), LEASE_SECS, fresh)
            .await?)
    }

    /// Sends a claimed batch; false when the round ends (asked to stop, or the server
    /// failed). What is not sent goes back: when stopping, when the server fails, and before
    /// the lease could run out under a slow server (then the round goes on with a new claim).
    async fn send_batch(
        &mut self,
        claimed: Vec<ClaimedMail>,
        stop: &watch::Receiver<bool>,
        round: &mut SendRound,
    ) -> Result<bool> {
        let claimed_at = std::time::Instant::now();
        let mut rest = claimed.into_iter();
        while let Some(mail) = rest.next() {
            let lease_ending = claimed_at.elapsed() > LEASE_MARGIN;
            if lease_ending || !self.paced(stop).await {
                let back: Vec<(i64, i64)> = std::iter::once(mail)
                    .chain(rest)
                    .map(|m| (m.id, m.claim))
                    .collect();
                self.service.store.release_mails(&back, None).await?;
                round.released += back.len();
                return Ok(lease_ending && !*stop.borrow());
            }
            let store = self.service.store.clone();
            match self.attempt(&mail).await {
                Outcome::Sent => {
                    store
                        .mail_sent(mail.id, mail.claim, self.service.now())
                        .await?;
                    self.trouble_backoff = Duration::ZERO;
                    round.sent += 1;
                }
                Outcome::Refused(e) => {
                    tracing::warn!(mail = mail.id, error = %e, "the mail server refused an invitation");
                    store.mail_failed(mail.id, mail.claim, &e, None).await?;
                    round.failed += 1;
                }
                Outcome::Deferred(e) => self.defer(&mail, &e, round).await?,
                Outcome::ServerTrouble(e) => {
                    // No fault of the mails': this one and the rest go back as they were, no
                    // attempt counted (the links' expiry bounds how long they wait), and their
                    // turn comes when the server answers again.
                    tracing::warn!(error = %e, "the mail server could not be used; trying again later");
                    store
                        .release_mails(&[(mail.id, mail.claim)], Some(&e))
                        .await?;
                    let back: Vec<(i64, i64)> = rest.map(|m| (m.id, m.claim)).collect();
                    store.release_mails(&back, None).await?;
                    round.released += back.len() + 1;
                    self.trouble_backoff = (self.trouble_backoff * 2)
                        .clamp(Duration::from_secs(30), Duration::from_secs(600));
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Waits for the pace's next tick; false if asked to stop meanwhile.
    async fn paced(&mut self, stop: &watch::Receiver<bool>) -> bool {
        if *stop.borrow() {
            return false;
        }
        let per_minute = self.settings.per_minute;
        let pace = self.pace.get_or_insert_with(|| {
            let mut pace = tokio::time::interval(Duration::from_secs(60) / per_minute);
            pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            pace
        });
        let mut stop = stop.clone();
        tokio::select! {
            _ = pace.tick() => true,
            asked = async { stop.wait_for(|s| *s).await.is_ok() } => {
                if asked {
                    return false;
                }
                // Nobody can ask any more (the sender of `stop` is gone): just the pace.
                pace.tick().await;
                true
            }
        }
    }

    /// A mail to try again later, or, after [`MAX_ATTEMPTS`], never.
    async fn defer(&self, mail: &ClaimedMail, error: &str, round: &mut SendRound) -> Result<()> {
        let retry = (mail.attempt < MAX_ATTEMPTS)
            .then(|| self.service.now() + retry_delay_secs(mail.attempt));
        tracing::warn!(mail = mail.id, attempt = mail.attempt, %error, "an invitation could not be sent");
        self.service
            .store
            .mail_failed(mail.id, mail.claim, error, retry)
            .await?;
        if retry.is_some() {
            round.deferred += 1;
        } else {
            round.failed += 1;
        }
        Ok(())
    }

    async fn attempt(&mut self, mail: &ClaimedMail) -> Outcome {
        let message = match self.message(mail) {
            Ok(m) => m,
            Err(e) => return Outcome::Refused(e),
        };
        self.client
            .send(message.envelope(), &message.formatted())
            .await
    }

    /// The mail for a claim: both parts, the link with its secret opened from the seal.
    fn message(&self, mail: &ClaimedMail) -> std::result::Result<Message, String> {
        let secret = self
            .service
            .sealer()
            .ok()
            .and_then(|s| s.open(&mail.sealed_secret))
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or("the link's sealed secret does not open with this gateway's key")?;
        let to: Mailbox = mail
            .recipient
            .parse()
            .map_err(|e| format!("the address {:?}: {e}", mail.recipient))?;
        let link = format!("{}/enroll/{secret}", self.settings.public_url);
        let body = InvitationMail {
            user: mail.user.as_str(),
            device: mail.device.as_str(),
            link: &link,
            expires_at: mail.expires_at,
            helpdesk: self.settings.helpdesk.as_deref(),
            reminder: mail.reminder,
        };
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(body.subject())
            .message_id(Some(mail.message_id.clone()))
            .date_now()
            .multipart(MultiPart::alternative_plain_html(body.text(), body.html()))
            .map_err(|e| e.to_string())
    }

    /// Sends until `stop` turns true: what is due, then waits for a wake-up, the next due
    /// time or [`POLL`], whichever is first. An orderly stop finishes the mail in flight.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            let stopped = *stop.borrow();
            if stopped {
                self.client.close().await;
                return;
            }
            let wait = match self.send_due(&stop).await {
                Ok(_) if !self.trouble_backoff.is_zero() => self.trouble_backoff,
                Ok(_) => self.until_next_due().await,
                Err(e) => {
                    tracing::error!(error = %e, "the mail queue could not be read or written");
                    POLL
                }
            };
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
    }

    async fn until_next_due(&self) -> Duration {
        match self.service.store.next_mail_due().await {
            Ok(Some(at)) => {
                let secs = u64::try_from(at - self.service.now()).unwrap_or(0);
                Duration::from_secs(secs).clamp(Duration::from_millis(50), POLL)
            }
            _ => POLL,
        }
    }
}

/// The certificates of a PEM file, each as its own PEM block.
fn pem_certificates(pem: &[u8]) -> Vec<Vec<u8>> {
    const END: &str = "-----END CERTIFICATE-----";
    let text = String::from_utf8_lossy(pem);
    text.split_inclusive(END)
        .filter(|block| block.contains("-----BEGIN CERTIFICATE-----"))
        .map(|block| block.trim_start().as_bytes().to_vec())
        .collect()
}

impl Service {
    /// Lets this process's mail sender know that a mail was queued.
    pub fn with_mail_waker(mut self, wake: Arc<Notify>) -> Service {
        self.mail_wake = Some(wake);
        self
    }

    /// Whether this process sends invitation mails (a mail server is set).
    pub fn mail_enabled(&self) -> bool {
        self.mail_wake.is_some()
    }

    pub(crate) fn mail_queued(&self) {
        if let Some(w) = &self.mail_wake {
            w.notify_one();
        }
    }

    /// Mails a reminder with a new link to everyone (of `group`, or of every group) whose
    /// invitation is unused and who has a mail address; each link stays open for
    /// `link_hours` from now at least. The link of an earlier mail or sheet stops working
    /// when the reminder is sent.
    pub async fn remind(
        &self,
        caller: &Caller,
        group: Option<&Name>,
        link_hours: LinkHours,
    ) -> Result<RemindOutcome> {
        // It writes to people: as the import that invites them.
        caller.require(Scope::DevicesWrite)?;
        caller.require(Scope::UsersWrite)?;
        let now = self.now();
        let out = self
            .store
            .queue_reminders(caller.actor(), group, now, now + link_hours.as_secs())
            .await?;
        if out.queued > 0 {
            self.mail_queued();
        }
        Ok(out)
    }

    /// Invitations, newest first, with their latest mail and how far their person got.
    pub async fn invitations(&self, caller: &Caller, limit: u32) -> Result<Vec<InvitationStatus>> {
        // The list holds staff's mail addresses.
        caller.require(Scope::DevicesRead)?;
        caller.require(Scope::UsersRead)?;
        Ok(self.store.invitations(limit).await?)
    }

    /// The mail queue's figures by state.
    pub async fn mail_counts(&self) -> Result<MailCounts> {
        Ok(self.store.mail_counts().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_longer_each_time_up_to_an_hour() {
        let delays: Vec<i64> = (1..=MAX_ATTEMPTS).map(retry_delay_secs).collect();
        assert_eq!(delays[..4], [60, 120, 240, 480]);
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*delays.last().unwrap(), 3600);
    }

    #[test]
    fn a_ca_file_with_two_certificates_gives_two() {
        let pem = b"junk\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n\
                    -----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n";
        let certs = pem_certificates(pem);
        assert_eq!(certs.len(), 2);
        assert!(certs[1].starts_with(b"-----BEGIN CERTIFICATE-----\nBBBB"));
    }

    #[test]
    fn plain_text_smtp_is_refused_beyond_this_machine() {
        assert!(is_loopback("127.0.0.1") && is_loopback("::1") && is_loopback("localhost"));
        assert!(!is_loopback("mail.stadt.example") && !is_loopback("10.0.0.5"));
    }
}
