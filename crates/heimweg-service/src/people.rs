//! Importing a rollout's people list (CSV, see `heimweg_control::import`): a dry run that says
//! what would change and which rows are refused and why, then the import, one transaction per
//! batch of rows. The invitations it prepares are one-time enrollment links whose secrets
//! exist only in the report.

use crate::{generate_token, token_hash, Caller, Result, Service, ServiceError};
use heimweg_control::import::{parse_people, PersonRow};
use heimweg_control::{Email, LinkHours, Name, Scope};
use heimweg_store::{DeviceOutcome, NewLink, PersonImport, PersonOutcome, RolloutRow, UserOutcome};

/// "Connected this week" in the rollout view.
pub const WEEK_SECS: i64 = 7 * 86_400;

/// Rows per transaction: short enough that enrollments and revocations are not held up (the
/// write lock is the store's one writer), long enough that 5,000 rows take a few seconds.
pub const IMPORT_BATCH: usize = 250;

/// How an import runs.
#[derive(Debug, Clone, Copy)]
pub struct ImportOptions {
    /// Only say what would change.
    pub dry_run: bool,
    /// How long the invitations' links stay open.
    pub link_hours: LinkHours,
    /// Mail each invitation whose person has an address (through the gateway's mail queue)
    /// instead of handing its link out in the report.
    pub mail: bool,
}

/// What became of one row of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedRow {
    pub line: u64,
    pub user: Option<Name>,
    pub device: Option<Name>,
    pub outcome: PersonOutcome,
}

/// A prepared invitation: the link's secret exists only here.
#[derive(Debug)]
pub struct Invitation {
    pub user: Name,
    pub email: Option<Email>,
    pub device: Name,
    pub group: Name,
    pub secret: String,
    pub expires_at: i64,
}

/// The outcome of an import or a dry run, row by row in file order.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub dry_run: bool,
    pub rows: Vec<ImportedRow>,
    /// The links made to be handed out (none in a dry run): those not mailed.
    pub invitations: Vec<Invitation>,
    /// Invitations queued for mail (in a dry run: that would be): their links exist only in
    /// the mail.
    pub mailed: usize,
}

/// How many rows had each outcome.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ImportCounts {
    pub users_created: usize,
    pub invited: usize,
    /// Rows that change nothing: their user and device are there already.
    pub unchanged: usize,
    pub refused: usize,
}

impl ImportReport {
    pub fn counts(&self) -> ImportCounts {
        let mut c = ImportCounts::default();
        for r in &self.rows {
            match &r.outcome {
                PersonOutcome::Refused(_) => c.refused += 1,
                PersonOutcome::Done { user, device } => {
                    let created = *user == UserOutcome::Created;
                    let invited = matches!(device, DeviceOutcome::Invited(_));
                    c.users_created += usize::from(created);
                    c.invited += usize::from(invited);
                    c.unchanged += usize::from(!created && !invited);
                }
            }
        }
        c
    }
}

impl ImportReport {
    /// The invitations as a list for a mail merge or a printout, in the format of the file
    /// imported (`;`, UTF-8 with a byte-order mark, CRLF: what Excel in Germany opens as it
    /// is): user, email, device, group, link (`base_url` + `/enroll/` + secret), expires (UTC).
    /// A field Excel would run as a formula (`=`, `+`, `-`, `@` first) starts with `'`.
    pub fn invitations_csv(&self, base_url: &str) -> String {
        crate::export::excel_csv(
            &["user", "email", "device", "group", "link", "expires"],
            self.invitations.iter().map(|i| {
                [
                    i.user.to_string(),
                    i.email.as_ref().map_or("", Email::as_str).to_string(),
                    i.device.to_string(),
                    i.group.to_string(),
                    format!("{base_url}/enroll/{}", i.secret),
                    crate::export::utc(i.expires_at),
                ]
            }),
        )
    }
}

impl Service {
    /// How far each group's rollout got: invitations made, open and expired unused, devices
    /// enrolled, connected at least once and within the last week.
    pub async fn rollout(&self, caller: &Caller) -> Result<Vec<RolloutRow>> {
        caller.require(Scope::DevicesRead)?;
        Ok(self.store.rollout(self.now(), WEEK_SECS).await?)
    }

    /// Imports a people list (or, with `dry_run`, only reports what that would do). A file
    /// that cannot be read changes nothing; a refused row changes nothing of its own.
    pub async fn import_people(
        &self,
        caller: &Caller,
        file: &[u8],
        options: ImportOptions,
    ) -> Result<ImportReport> {
        caller.require(Scope::UsersWrite)?;
        caller.require(Scope::DevicesWrite)?;
        let list = parse_people(file).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let now = self.now();
        let expires_at = now + options.link_hours.as_secs();
        let mut report = ImportReport {
            dry_run: options.dry_run,
            ..ImportReport::default()
        };
        for r in list.refused {
            report.rows.push(ImportedRow {
                line: r.line,
                user: None,
                device: None,
                outcome: PersonOutcome::Refused(r.reason),
            });
        }
        for batch in list.rows.chunks(IMPORT_BATCH) {
            let secrets: Vec<Option<String>> = batch
                .iter()
                .map(|r| r.device.as_ref().map(|_| generate_token()))
                .collect();
            let people: Vec<PersonImport> = batch
                .iter()
                .zip(&secrets)
                .map(|(r, secret)| person(r, secret.as_deref(), expires_at, options.mail))
                .collect();
            let outcomes = self
                .store
                .import_people(caller.actor(), &people, now, !options.dry_run)
                .await?;
            for ((row, secret), outcome) in batch.iter().zip(secrets).zip(outcomes) {
                let invited = matches!(
                    outcome,
                    PersonOutcome::Done {
                        device: DeviceOutcome::Invited(_),
                        ..
                    }
                );
                if invited && options.mail && row.email.is_some() {
                    report.mailed += 1;
                } else if let (true, false, Some(device), Some(secret)) =
                    (invited, options.dry_run, &row.device, secret)
                {
                    report.invitations.push(Invitation {
                        user: row.user.clone(),
                        email: row.email.clone(),
                        device: device.clone(),
                        group: row.group.clone(),
                        secret,
                        expires_at,
                    });
                }
                report.rows.push(ImportedRow {
                    line: row.line,
                    user: Some(row.user.clone()),
                    device: row.device.clone(),
                    outcome,
                });
            }
        }
        report.rows.sort_by_key(|r| r.line);
        if report.mailed > 0 && !options.dry_run {
            self.mail_queued();
        }
        Ok(report)
    }
}

fn person(r: &PersonRow, secret: Option<&str>, expires_at: i64, mail: bool) -> PersonImport {
    PersonImport {
        mail_to: r.email.clone().filter(|_| mail),
        user: r.user.clone(),
        email: r.email.clone(),
        link: r
            .device
            .as_ref()
            .zip(secret)
            .map(|(device, secret)| NewLink {
                device_name: device.clone(),
                group: r.group.clone(),
                owner: Some(r.user.clone()),
                token_hash: token_hash(secret),
                expires_at,
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_invitation_list_opens_in_excel_and_runs_no_formula() {
        let name = |s: &str| Name::new(s).unwrap();
        let report = ImportReport {
            dry_run: false,
            mailed: 0,
            rows: vec![],
            invitations: vec![Invitation {
                user: name("=HYPERLINK(\"http://evil\")"),
                email: Some(Email::new("a@b.de").unwrap()),
                device: name("Jürgens \"Laptop\""),
                group: name("default"),
                secret: "hw_s3cret".into(),
                expires_at: 86_400,
            }],
        };
        let csv = report.invitations_csv("https://vpn.example");
        assert_eq!(
            csv,
            "\u{feff}user;email;device;group;link;expires\r\n\
             \"'=HYPERLINK(\"\"http://evil\"\")\";\"a@b.de\";\"Jürgens \"\"Laptop\"\"\";\"default\";\
             \"https://vpn.example/enroll/hw_s3cret\";\"1970-01-02T00:00:00Z\"\r\n"
        );
    }
}
