//! Directory sync: the city's LDAP directory or Active Directory decides who is a user of
//! heimweg and in which group. A run reads every entry under the base that matches the filter
//! (paged, so that no server's size limit cuts the answer short), and the store applies the
//! plan heimweg_control::directory makes of it in one transaction: newcomers created,
//! changes followed, leavers and disabled accounts disabled with every device revoked. A run
//! that cannot read the directory, or whose answer would disable more than the threshold
//! allows, changes nothing and says so in the runs the panel and the API list.
//!
//! [`DirectorySync::run`] runs it every interval on the gateway; gateways sharing a database
//! skip a scheduled run when another gateway's run started within the interval.

use crate::{Caller, Result, Service, ServiceError};
use heimweg_control::directory::{Dn, Entry, GroupMap, Plan, Refused, SyncPolicy};
use heimweg_control::Scope;
use heimweg_store::DirectoryRun;
use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{LdapConnAsync, LdapConnSettings, Scope as LdapScope, SearchEntry};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Entries a page: below every server's size limit (OpenLDAP's default 500, AD's 1000).
const PAGE_SIZE: i32 = 400;
/// Connecting, and each operation.
const LDAP_TIMEOUT: Duration = Duration::from_secs(15);
/// A whole read: 50,000 entries take seconds; a directory that trickles is given up on.
const READ_TIMEOUT: Duration = Duration::from_secs(600);

/// Whose password is checked: the entry with this login, or with this stored id.
#[derive(Debug, Clone)]
pub enum Lookup {
    Login(String),
    Id(String),
}

/// What a password check found.
#[derive(Debug)]
pub enum PasswordCheck {
    /// The password is right: the entry, as the sync reads it.
    Right(Entry),
    /// No such entry, more than one, or a wrong password (which the answer does not tell apart).
    Wrong,
    /// The entry is disabled or locked in the directory.
    Disabled,
}

/// How the directory is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LdapSecurity {
    /// StartTLS on ldap://, required (never a fallback to plain text).
    StartTls,
    /// TLS from the first byte (ldaps://).
    Tls,
    /// Plain text, to a directory on this machine only.
    None,
}

/// Which conventions the directory follows: the defaults for the attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectoryKind {
    /// Active Directory (or Samba): sAMAccountName, objectGUID, userAccountControl.
    ActiveDirectory,
    /// OpenLDAP and other plain LDAP servers: uid, entryUUID, a lock attribute.
    Ldap,
}

impl std::str::FromStr for DirectoryKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "ad" => Ok(DirectoryKind::ActiveDirectory),
            "ldap" => Ok(DirectoryKind::Ldap),
            _ => Err(format!("{s:?} is not a directory kind: ad or ldap")),
        }
    }
}

/// How a disabled account shows in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisabledRule {
    /// AD's `userAccountControl` with bit 2 (ACCOUNTDISABLE) set. A lockout after wrong
    /// passwords is another attribute (lockoutTime) and disables nobody here.
    AccountDisable,
    /// The attribute is present, with this value if one is given (OpenLDAP's administrative
    /// lock `pwdAccountLockedTime: 000001010000Z`; 389-ds `nsAccountLock: TRUE`). A temporary
    /// lockout after wrong passwords has another value and disables nobody: anyone could
    /// otherwise cut a colleague off by mistyping their password.
    Attribute { name: String, value: Option<String> },
}

impl DisabledRule {
    /// `attr` or `attr=value`; `userAccountControl` alone is AD's bit 2 (every AD account
    /// has the attribute, so its presence says nothing).
    pub fn parse(raw: &str) -> DisabledRule {
        if raw.trim().eq_ignore_ascii_case("userAccountControl") {
            return DisabledRule::AccountDisable;
        }
        match raw.split_once('=') {
            Some((name, value)) => DisabledRule::Attribute {
                name: name.trim().to_string(),
                value: Some(value.trim().to_string()),
            },
            None => DisabledRule::Attribute {
                name: raw.trim().to_string(),
                value: None,
            },
        }
    }

    fn attribute(&self) -> &str {
        match self {
            DisabledRule::AccountDisable => "userAccountControl",
            DisabledRule::Attribute { name, .. } => name,
        }
    }

    fn holds(&self, values: &[String]) -> bool {
        match self {
            DisabledRule::AccountDisable => values
                .iter()
                .any(|v| v.trim().parse::<i64>().is_ok_and(|n| n & 2 != 0)),
            DisabledRule::Attribute { value: None, .. } => !values.is_empty(),
            DisabledRule::Attribute {
                value: Some(want), ..
            } => values.iter().any(|v| v.eq_ignore_ascii_case(want)),
        }
    }
}

/// Where the directory is and how to read it. The bind password comes from the settings
/// file only, and [`std::fmt::Debug`] never prints it.
#[derive(Clone)]
pub struct DirectorySettings {
    /// `ldap://dc1.stadt.example` or `ldaps://dc1.stadt.example:636`.
    pub url: String,
    pub security: LdapSecurity,
    /// The CA certificates (PEM) the directory's certificate is checked against; without
    /// them, the system's.
    pub ca_pem: Option<Vec<u8>>,
    /// The account heimweg reads with, and its password.
    pub bind: Option<(String, String)>,
    /// Where the users are, e.g. `ou=Mitarbeiter,dc=stadt,dc=example`.
    pub base: String,
    /// Which entries are people, e.g. `(&(objectCategory=person)(objectClass=user))`.
    pub filter: String,
    pub login_attribute: String,
    pub mail_attribute: String,
    /// The entry's stable id: objectGUID, entryUUID.
    pub id_attribute: String,
    pub disabled: DisabledRule,
    pub groups: GroupMap,
    pub interval: Duration,
    pub policy: SyncPolicy,
}

impl std::fmt::Debug for DirectorySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectorySettings")
            .field("url", &self.url)
            .field("security", &self.security)
            .field("bind_dn", &self.bind.as_ref().map(|b| &b.0))
            .field("base", &self.base)
            .field("filter", &self.filter)
            .finish_non_exhaustive()
    }
}

impl DirectorySettings {
    /// The defaults of a kind of directory, for the URL, base and group mapping given; the
    /// security follows the URL (ldaps:// is TLS, ldap:// StartTLS).
    pub fn new(kind: DirectoryKind, url: &str, base: &str, groups: GroupMap) -> Result<Self> {
        let security = match url.split_once("://").map(|(s, _)| s.to_ascii_lowercase()) {
            Some(s) if s == "ldaps" => LdapSecurity::Tls,
            Some(s) if s == "ldap" => LdapSecurity::StartTls,
            _ => {
                return Err(ServiceError::Invalid(format!(
                    "the directory's address {url:?} must start with ldap:// or ldaps://"
                )))
            }
        };
        Dn::parse(base).map_err(|e| ServiceError::Invalid(format!("the directory base: {e}")))?;
        let (filter, login, id, disabled) = match kind {
            DirectoryKind::ActiveDirectory => (
                "(&(objectCategory=person)(objectClass=user))",
                "sAMAccountName",
                "objectGUID",
                DisabledRule::AccountDisable,
            ),
            DirectoryKind::Ldap => (
                "(objectClass=inetOrgPerson)",
                "uid",
                "entryUUID",
                DisabledRule::parse("pwdAccountLockedTime=000001010000Z"),
            ),
        };
        Ok(DirectorySettings {
            url: url.to_string(),
            security,
            ca_pem: None,
            bind: None,
            base: base.to_string(),
            filter: filter.to_string(),
            login_attribute: login.to_string(),
            mail_attribute: "mail".to_string(),
            id_attribute: id.to_string(),
            disabled,
            groups,
            interval: Duration::from_secs(15 * 60),
            policy: SyncPolicy::default(),
        })
    }

    /// Plain text is refused unless the directory is on this machine.
    fn check_security(&self) -> std::result::Result<(), String> {
        if self.security != LdapSecurity::None {
            return Ok(());
        }
        let host = self
            .url
            .split_once("://")
            .map_or("", |(_, rest)| rest)
            .split('/')
            .next()
            .unwrap_or("");
        let host = host
            .rsplit_once(':')
            .filter(|(h, p)| !h.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
            .map_or(host, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        if crate::mail::is_loopback(host) {
            Ok(())
        } else {
            Err(format!(
                "plain-text LDAP is allowed to a directory on this machine only, not to {host:?}: \
                 the bind password and every entry would cross the network readable"
            ))
        }
    }

    fn tls_config(&self) -> std::result::Result<Arc<rustls::ClientConfig>, String> {
        let mut roots = rustls::RootCertStore::empty();
        if let Some(pem) = &self.ca_pem {
            use rustls::pki_types::pem::PemObject;
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("the directory's CA file: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("the directory's CA file: {e}"))?;
            }
            if roots.is_empty() {
                return Err("the directory's CA file holds no certificate".into());
            }
        } else {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(
                    "no CA certificates: install ca-certificates or give the directory's CA \
                     with HEIMWEG_LDAP_CA_FILE"
                        .into(),
                );
            }
        }
        // ring, as for mail and PostgreSQL: the one provider in the tree. (rustls deprecated
        // it for lacking post-quantum key exchange, which only aws-lc-rs brings; a second
        // provider would make every crate that lets rustls pick one fail at run time.)
        #[allow(deprecated)]
        let provider = rustls::crypto::ring::default_provider();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }

    /// Every entry under the base that matches the filter. Runs on a task of its own: the
    /// LDAP library panics on some malformed answers, and a panic there must fail the run,
    /// not the gateway.
    pub async fn read(self: &Arc<Self>) -> std::result::Result<Vec<Entry>, String> {
        let me = Arc::clone(self);
        let task = tokio::spawn(async move {
            tokio::time::timeout(READ_TIMEOUT, me.read_entries())
                .await
                .map_err(|_| format!("reading the directory took longer than {READ_TIMEOUT:?}"))?
        });
        match task.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => Err("the directory's answer could not be parsed".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// A connection, signed in as the reading account.
    async fn connect(&self) -> std::result::Result<ldap3::Ldap, String> {
        self.check_security()?;
        let mut conn = LdapConnSettings::new()
            .set_conn_timeout(LDAP_TIMEOUT)
            .set_starttls(self.security == LdapSecurity::StartTls);
        if self.security != LdapSecurity::None {
            conn = conn.set_config(self.tls_config()?);
        }
        let where_ = &self.url;
        let (driver, mut ldap) = LdapConnAsync::with_settings(conn, &self.url)
            .await
            .map_err(|e| format!("connecting to {where_}: {e}"))?;
        ldap3::drive!(driver);
        if let Some((dn, password)) = &self.bind {
            ldap.with_timeout(LDAP_TIMEOUT)
                .simple_bind(dn, password)
                .await
                .and_then(ldap3::LdapResult::success)
                .map_err(|e| format!("signing in to {where_} as {dn}: {e}"))?;
        }
        Ok(ldap)
    }

    /// The attributes an [`Entry`] is made of.
    fn attributes(&self) -> Vec<String> {
        vec![
            self.login_attribute.clone(),
            self.mail_attribute.clone(),
            self.id_attribute.clone(),
            "memberOf".to_string(),
            self.disabled.attribute().to_string(),
        ]
    }

    /// Checks `password` for the one entry `who` names, by a bind as that entry, on a task of
    /// its own (as [`DirectorySettings::read`], for the library's panics). An error is a
    /// directory that could not be asked, never a wrong password.
    pub async fn check_password(
        self: &Arc<Self>,
        who: Lookup,
        password: String,
    ) -> std::result::Result<PasswordCheck, String> {
        let me = Arc::clone(self);
        let task = tokio::spawn(async move {
            tokio::time::timeout(3 * LDAP_TIMEOUT, me.bind_as(&who, &password))
                .await
                .map_err(|_| "the directory did not answer in time".to_string())?
        });
        match task.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => Err("the directory's answer could not be parsed".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn bind_as(
        &self,
        who: &Lookup,
        password: &str,
    ) -> std::result::Result<PasswordCheck, String> {
        // An empty password is an unauthenticated bind, which many servers answer with
        // success (RFC 4513 5.1.2): it must never reach the directory.
        if password.is_empty() {
            return Ok(PasswordCheck::Wrong);
        }
        let mut ldap = self.connect().await?;
        let checked = self.find_and_bind(&mut ldap, who, password).await;
        let _ = ldap.unbind().await;
        checked
    }

    /// On `ldap` (signed in as the reading account): the one entry `who` names, then a bind
    /// as it with `password`.
    async fn find_and_bind(
        &self,
        ldap: &mut ldap3::Ldap,
        who: &Lookup,
        password: &str,
    ) -> std::result::Result<PasswordCheck, String> {
        // The search library takes a filter without its outer parentheses; a conjunction
        // does not.
        let people = if self.filter.trim_start().starts_with('(') {
            self.filter.clone()
        } else {
            format!("({})", self.filter.trim())
        };
        let (base, scope, filter) = match who {
            Lookup::Login(login) => (
                self.base.clone(),
                LdapScope::Subtree,
                format!(
                    "(&{people}({}={}))",
                    self.login_attribute,
                    ldap3::ldap_escape(login)
                ),
            ),
            Lookup::Id(id) => match id.strip_prefix("dn:") {
                Some(dn) => (dn.to_string(), LdapScope::Base, people),
                None => (
                    self.base.clone(),
                    LdapScope::Subtree,
                    format!("(&{people}({}={}))", self.id_attribute, self.id_value(id)),
                ),
            },
        };
        let (found, _) = ldap
            .with_timeout(LDAP_TIMEOUT)
            .search(&base, scope, &filter, self.attributes())
            .await
            .and_then(ldap3::SearchResult::success)
            .map_err(|e| format!("searching {base}: {e}"))?;
        let mut entries = found
            .into_iter()
            .map(|e| self.entry(SearchEntry::construct(e)));
        let (Some(entry), None) = (entries.next(), entries.next()) else {
            // None, or more than one: nobody to check the password of.
            return Ok(PasswordCheck::Wrong);
        };
        if entry.disabled {
            return Ok(PasswordCheck::Disabled);
        }
        let answer = ldap
            .with_timeout(LDAP_TIMEOUT)
            .simple_bind(&entry.dn, password)
            .await
            .map_err(|e| format!("checking a password at {}: {e}", self.url))?;
        match answer.rc {
            0 => Ok(PasswordCheck::Right(entry)),
            // invalidCredentials; OpenLDAP's ppolicy and AD answer a locked or expired
            // account with it too.
            49 => Ok(PasswordCheck::Wrong),
            rc => Err(format!(
                "the directory answered a password check with {rc}: {}",
                answer.text
            )),
        }
    }

    /// A stored entry id as a filter value: objectGUID's hex back to its escaped bytes.
    fn id_value(&self, id: &str) -> String {
        let hex = id.len() % 2 == 0 && id.bytes().all(|b| b.is_ascii_hexdigit());
        if hex && self.id_attribute.eq_ignore_ascii_case("objectGUID") {
            id.as_bytes()
                .chunks(2)
                .map(|pair| format!("\\{}", String::from_utf8_lossy(pair)))
                .collect()
        } else {
            ldap3::ldap_escape(id).into_owned()
        }
    }

    async fn read_entries(&self) -> std::result::Result<Vec<Entry>, String> {
        let mut ldap = self.connect().await?;
        let attributes = self.attributes();
        let adapters: Vec<Box<dyn Adapter<String, Vec<String>>>> = vec![
            // AD answers a search from the domain's root with references to other partitions
            // too; they are no entries.
            Box::new(EntriesOnly::new()),
            Box::new(PagedResults::new(PAGE_SIZE)),
        ];
        let mut stream = ldap
            .streaming_search_with(
                adapters,
                &self.base,
                LdapScope::Subtree,
                &self.filter,
                attributes,
            )
            .await
            .map_err(|e| format!("searching {}: {e}", self.base))?;
        let mut entries = Vec::new();
        while let Some(raw) = stream
            .next()
            .await
            .map_err(|e| format!("reading {}: {e}", self.base))?
        {
            entries.push(self.entry(SearchEntry::construct(raw)));
        }
        stream
            .finish()
            .await
            .success()
            .map_err(|e| format!("searching {}: {e}", self.base))?;
        let _ = ldap.unbind().await;
        Ok(entries)
    }

    fn entry(&self, e: SearchEntry) -> Entry {
        let text = |name: &str| -> Vec<String> {
            // Attribute names compare without case; servers answer in their own spelling.
            e.attrs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        // objectGUID is binary, but a GUID whose sixteen bytes happen to be UTF-8 arrives
        // as text: read both, as bytes.
        let id = e
            .bin_attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&self.id_attribute))
            .and_then(|(_, v)| v.first().cloned())
            .or_else(|| {
                text(&self.id_attribute)
                    .first()
                    .map(|s| s.as_bytes().to_vec())
            });
        let id = match id {
            Some(bytes) if self.id_attribute.eq_ignore_ascii_case("objectGUID") => {
                bytes.iter().map(|b| format!("{b:02x}")).collect()
            }
            Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            // Without its id (the reading account may not see it), an entry is known by its
            // DN: better than not knowing it, which would disable its user.
            None => format!(
                "dn:{}",
                Dn::parse(&e.dn).map_or_else(|_| e.dn.clone(), |d| d.to_string())
            ),
        };
        Entry {
            id,
            login: text(&self.login_attribute)
                .into_iter()
                .next()
                .unwrap_or_default(),
            email: text(&self.mail_attribute).into_iter().next(),
            groups: text("memberOf"),
            disabled: self.disabled.holds(&text(self.disabled.attribute())),
            dn: e.dn,
        }
    }
}

impl Service {
    /// Connects this service to a directory: the sync's settings, for the runs the API and
    /// the panel start.
    pub fn with_directory(mut self, settings: DirectorySettings) -> Service {
        self.directory = Some(Arc::new(settings));
        self
    }

    /// The directory's settings, if one is connected.
    pub fn directory(&self) -> Option<&DirectorySettings> {
        self.directory.as_deref()
    }

    /// Reads the directory and applies it now. Changing who may connect needs the rights to
    /// change users and to revoke devices. The run is recorded whatever its outcome: `ok`,
    /// `refused` (the safety threshold: nothing changed) or `failed` (the directory could not
    /// be read: nothing changed).
    pub async fn sync_directory(&self, caller: &Caller) -> Result<DirectoryRun> {
        caller.require(Scope::UsersWrite)?;
        caller.require(Scope::DevicesWrite)?;
        let settings = self.connected_directory()?;
        let started_at = self.now();
        let run = match settings.read().await {
            Ok(entries) => {
                let applied = self
                    .store
                    .apply_directory(
                        caller.actor(),
                        &entries,
                        &settings.groups,
                        settings.policy,
                        started_at,
                        self.now(),
                    )
                    .await;
                match applied {
                    Ok(run) => run,
                    // The mapping names a group that does not exist: a failed run the panel
                    // shows, like a directory that cannot be read.
                    Err(e @ heimweg_store::StoreError::NotFound(_)) => {
                        self.store
                            .record_directory_failure(
                                caller.actor(),
                                started_at,
                                self.now(),
                                &e.to_string(),
                            )
                            .await?
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Err(why) => {
                tracing::warn!(error = %why, "the directory could not be read; nothing was changed");
                self.store
                    .record_directory_failure(caller.actor(), started_at, self.now(), &why)
                    .await?
            }
        };
        if run.outcome == "refused" {
            tracing::error!(message = ?run.message, "directory sync refused");
        }
        if run.disabled > 0 || run.created > 0 || run.changed > 0 || run.enabled > 0 {
            self.applied().await;
        }
        Ok(run)
    }

    /// What a run would do now, changing nothing and recording nothing: for an admin's first
    /// look at what a directory would do to the users. Needs what a run needs.
    pub async fn preview_directory(&self, caller: &Caller) -> Result<DirectoryPreview> {
        caller.require(Scope::UsersWrite)?;
        caller.require(Scope::DevicesWrite)?;
        let settings = self.connected_directory()?;
        let entries = match settings.read().await {
            Ok(entries) => entries,
            Err(why) => return Ok(DirectoryPreview::Failed(why)),
        };
        let preview = self
            .store
            .preview_directory(&entries, &settings.groups, settings.policy)
            .await;
        Ok(match preview {
            Ok(Ok(plan)) => DirectoryPreview::Plan(plan),
            Ok(Err(refused)) => DirectoryPreview::Refused(refused),
            Err(e @ heimweg_store::StoreError::NotFound(_)) => {
                DirectoryPreview::Failed(e.to_string())
            }
            Err(e) => return Err(e.into()),
        })
    }

    fn connected_directory(&self) -> Result<Arc<DirectorySettings>> {
        self.directory.clone().ok_or_else(|| {
            ServiceError::NotReady(
                "no directory is connected: set HEIMWEG_LDAP_URL and the rest in the \
                 settings file (deploy/README.md)"
                    .into(),
            )
        })
    }

    /// The newest runs first, at most `limit`.
    pub async fn directory_runs(&self, caller: &Caller, limit: u32) -> Result<Vec<DirectoryRun>> {
        caller.require(Scope::UsersRead)?;
        Ok(self.store.directory_runs(limit.min(500)).await?)
    }
}

/// What a run would do (see [`Service::preview_directory`]).
#[derive(Debug)]
pub enum DirectoryPreview {
    Plan(Plan),
    /// Over the threshold: a run would change nothing.
    Refused(Refused),
    /// The directory could not be read, or the mapping names a missing group.
    Failed(String),
}

/// The scheduled sync of one gateway.
pub struct DirectorySync {
    service: Service,
    interval: Duration,
}

impl DirectorySync {
    pub fn new(service: Service) -> Option<DirectorySync> {
        let interval = service.directory()?.interval;
        Some(DirectorySync { service, interval })
    }

    /// Syncs every interval until `stop` turns true. Gateways that share a database take
    /// turns: a run is due one interval after the newest run any of them started.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            let wait = match self.service.store.last_directory_run().await {
                Ok(Some(last)) => {
                    let due = last + i64::try_from(self.interval.as_secs()).unwrap_or(i64::MAX);
                    Duration::from_secs(u64::try_from(due - self.service.now()).unwrap_or(0))
                }
                Ok(None) => Duration::ZERO,
                Err(e) => {
                    tracing::error!(error = %e, "the directory runs could not be read");
                    self.interval
                }
            };
            if !wait.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            match self.service.sync_directory(&Caller::system()).await {
                Ok(run) => tracing::info!(
                    outcome = %run.outcome,
                    entries = run.entries,
                    created = run.created,
                    changed = run.changed,
                    disabled = run.disabled,
                    enabled = run.enabled,
                    "directory synchronised"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "directory sync failed");
                    // Not at once again: the next interval.
                    tokio::select! {
                        () = tokio::time::sleep(self.interval) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(values: &[&str]) -> Vec<String> {
        values.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn a_disabled_account_is_read_as_each_directory_marks_it() {
        let ad = DisabledRule::parse("userAccountControl");
        assert_eq!(ad, DisabledRule::AccountDisable);
        assert!(ad.holds(&v(&["514"])));
        assert!(!ad.holds(&v(&["512"])));
        // Locked out after wrong passwords (lockoutTime) is not disabled: 512 stays.
        assert!(!ad.holds(&v(&["66048"])));
        assert!(!ad.holds(&v(&["not a number"])));
        let locked = DisabledRule::parse("pwdAccountLockedTime=000001010000Z");
        assert!(locked.holds(&v(&["000001010000Z"])));
        // A temporary lockout after wrong passwords carries its time: not disabled.
        assert!(!locked.holds(&v(&["20261205101500Z"])));
        assert!(!locked.holds(&[]));
        let present = DisabledRule::parse("nsAccountLock");
        assert!(present.holds(&v(&["TRUE"])));
        assert!(!present.holds(&[]));
    }

    #[test]
    fn a_stored_id_becomes_a_filter_value_that_matches_only_it() {
        let mut s = DirectorySettings::new(
            DirectoryKind::ActiveDirectory,
            "ldaps://dc1.stadt.example",
            "dc=stadt,dc=example",
            GroupMap::default(),
        )
        .unwrap();
        // objectGUID: the hex the sync stores, back to its bytes, each escaped.
        assert_eq!(s.id_value("0a1bff"), "\\0a\\1b\\ff");
        // Not hex (written by hand, or a DN id): escaped as text, never taken as bytes.
        assert_eq!(s.id_value("0a1*"), "0a1\\2a");
        assert_eq!(s.id_value("abc"), "abc");
        s.id_attribute = "entryUUID".into();
        assert_eq!(
            s.id_value("1b4e28ba-2fa1-11d2-883f-0016d3cca427"),
            "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
        );
        assert_eq!(s.id_value("a)(uid=*"), "a\\29\\28uid=\\2a");
    }

    #[test]
    fn plain_text_goes_to_this_machine_only() {
        let map = GroupMap::parse("staff=cn=vpn,dc=x").unwrap();
        let settings = |url: &str| {
            let mut s =
                DirectorySettings::new(DirectoryKind::Ldap, url, "dc=x", map.clone()).unwrap();
            s.security = LdapSecurity::None;
            s
        };
        for ok in [
            "ldap://127.0.0.1:3890",
            "ldap://localhost",
            "ldap://[::1]:389/",
        ] {
            assert!(settings(ok).check_security().is_ok(), "{ok}");
        }
        for refused in [
            "ldap://dc1.stadt.example",
            "ldap://10.0.0.5:389",
            "ldap://127.0.0.1.evil.example",
        ] {
            assert!(settings(refused).check_security().is_err(), "{refused}");
        }
        assert!(
            DirectorySettings::new(DirectoryKind::Ldap, "http://dc1", "dc=x", map.clone()).is_err()
        );
        assert!(
            DirectorySettings::new(DirectoryKind::Ldap, "ldap://dc1", "not a dn", map).is_err()
        );
    }
}
