//! `heimweg backup FILE` and `heimweg restore FILE`: a consistent copy of the SQLite store taken
//! while the gateway runs, and putting one back while no gateway runs on the state directory.
//! A PostgreSQL database is backed up and restored with PostgreSQL's own tools; both commands
//! say which.

use super::state::{gateway_public_key, open_service, ENV_FILE};
use super::{caller, Site};
use anyhow::{bail, Context, Result};
use clap::Args;
use heimweg::gateway;
use heimweg_service::{BackupInfo, Service, POSTGRES_BACKUP};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct BackupArgs {
    /// The file to write (mode 0600). It must not exist: a backup never replaces a file.
    file: PathBuf,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// A backup written by `heimweg backup`.
    file: PathBuf,
    /// Do not keep the database being replaced (by default it stays beside the new one as
    /// heimweg.db.before-restore-UNIXTIME).
    #[arg(long)]
    no_keep: bool,
    /// The interface of the gateway on this state directory: its UAPI socket must not answer.
    #[arg(long, env = "HEIMWEG_INTERFACE", default_value = "heimweg0")]
    interface: String,
    /// Directory of the UAPI socket.
    #[arg(long, env = "HEIMWEG_UAPI_DIR", default_value = gateway::UAPI_DIR)]
    uapi_dir: PathBuf,
}

fn on_postgres(site: &Site) -> bool {
    site.database
        .as_deref()
        .is_some_and(|url| url.starts_with("postgres:") || url.starts_with("postgresql:"))
}

/// The database file in the state directory, unless another database is configured: then
/// PostgreSQL's tools (or, for another SQLite file, the operator) do the job.
fn sqlite_file(site: &Site, what: &str) -> Result<PathBuf> {
    if on_postgres(site) {
        bail!("{what}: {POSTGRES_BACKUP}");
    }
    match &site.database {
        None => Ok(site.state_dir.join("heimweg.db")),
        Some(_) => bail!(
            "{what} works on the SQLite file in the state directory ({}); the database is set \
             by --database / HEIMWEG_DATABASE_URL (as in {ENV_FILE}) to another file",
            site.state_dir.join("heimweg.db").display()
        ),
    }
}

pub async fn backup(site: &Site, args: BackupArgs) -> Result<()> {
    if on_postgres(site) {
        bail!("heimweg backup: {POSTGRES_BACKUP}");
    }
    let service = open_service(site, false).await?;
    let info = service
        .backup(&caller(), &args.file)
        .await
        .with_context(|| format!("backing up to {}", args.file.display()))?;
    println!("backed up to {}: {}", args.file.display(), describe(&info));
    eprintln!(
        "The gateway key {} is not in the backup: keep a copy of it apart (a gateway restored \
         with another key answers no device's config).",
        site.state_dir.join("server.key").display()
    );
    Ok(())
}

fn describe(info: &BackupInfo) -> String {
    format!(
        "revision {}, {} devices, schema version {}, {} bytes",
        info.revision, info.devices, info.schema_version, info.bytes
    )
}

pub async fn restore(site: &Site, args: RestoreArgs) -> Result<()> {
    let database = sqlite_file(site, "heimweg restore")?;
    refuse_if_running(&args, &database)?;
    let caller = caller();
    let info = Service::verify_backup(&caller, &args.file)
        .await
        .with_context(|| format!("checking the backup {}", args.file.display()))?;
    create_state_dir(&site.state_dir)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if !args.no_keep && database.exists() {
        let kept = with_suffix(&database, &format!(".before-restore-{now}"));
        Service::backup_sqlite_file(&caller, &database, &kept)
            .await
            .with_context(|| {
                format!(
                    "keeping the current database {} before the restore (restore with --no-keep \
                     to replace it anyway)",
                    database.display()
                )
            })?;
        println!("kept the database it replaces as {}", kept.display());
    }
    // A copy through SQLite rather than of the bytes: a backup with a WAL file beside it
    // comes whole, and the copy is checked once more on the way.
    let incoming = with_suffix(
        &database,
        &format!(".restoring-{now}-{}", std::process::id()),
    );
    Service::backup_sqlite_file(&caller, &args.file, &incoming)
        .await
        .with_context(|| format!("copying {} into place", args.file.display()))?;
    put_in_place(&incoming, &database, &site.state_dir)?;
    // Opening it once migrates a backup from an older heimweg, now rather than at `serve`.
    let service = open_service(site, false).await?;
    let revision = service.revision().await?;
    service.close().await;
    println!(
        "restored {} into {}: {}",
        args.file.display(),
        database.display(),
        describe(&BackupInfo { revision, ..info })
    );
    remind_of_the_key(&site.state_dir);
    Ok(())
}

fn create_state_dir(state_dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))
}

/// `heimweg.db` + `suffix`, in the same directory.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Refuses while a gateway (or anything else) uses the database: the UAPI socket of the
/// configured interface answers, or a process has the database file open.
fn refuse_if_running(args: &RestoreArgs, database: &Path) -> Result<()> {
    gateway::validate_interface_name(&args.interface)?;
    let socket = args.uapi_dir.join(format!("{}.sock", args.interface));
    match std::os::unix::net::UnixStream::connect(&socket) {
        Ok(_) => bail!(
            "a gateway is running: its UAPI socket {} answers. Stop it first (systemctl stop \
             heimweg, or end `heimweg serve`), then restore; a running gateway would go on \
             writing to the database the restore replaces",
            socket.display()
        ),
        // No socket, or one left behind by a gateway that is gone.
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {}
        Err(e) => bail!(
            "cannot tell whether a gateway is running: {}: {e}",
            socket.display()
        ),
    }
    let holders = processes_holding(database);
    if let Some((pid, command)) = holders.first() {
        bail!(
            "{} is open in process {pid} ({command}){}: stop it first (systemctl stop heimweg, \
             or end `heimweg serve`), then restore",
            database.display(),
            if holders.len() > 1 {
                format!(" and {} more", holders.len() - 1)
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

/// The processes with the database (or its WAL or shared-memory file) open, as far as /proc
/// shows them: a gateway on another interface name, a `heimweg` command, an sqlite3 shell.
fn processes_holding(database: &Path) -> Vec<(u32, String)> {
    let Some(dir) = database.parent().and_then(|d| d.canonicalize().ok()) else {
        return Vec::new();
    };
    let Some(name) = database.file_name() else {
        return Vec::new();
    };
    let files: Vec<PathBuf> = ["", "-wal", "-shm"]
        .iter()
        .map(|s| with_suffix(&dir.join(name), s))
        .collect();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let open = fds
            .flatten()
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .any(|target| files.contains(&target));
        if open && pid != me {
            let command = std::fs::read(entry.path().join("cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .trim()
                        .to_string()
                })
                .unwrap_or_default();
            found.push((pid, command));
        }
    }
    found
}

/// Replaces `database` with `incoming` in one rename, owned as the state directory is (the
/// systemd unit's dynamic user; the restore runs as root). The old database's WAL,
/// shared-memory and journal files go first: SQLite would apply a WAL or journal left beside the
/// new file to it.
fn put_in_place(incoming: &Path, database: &Path, state_dir: &Path) -> Result<()> {
    if let Err(e) = same_owner(incoming, state_dir) {
        let _ = std::fs::remove_file(incoming);
        return Err(e);
    }
    for suffix in ["-wal", "-shm", "-journal"] {
        let stale = with_suffix(database, suffix);
        match std::fs::remove_file(&stale) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                let _ = std::fs::remove_file(incoming);
                return Err(e).with_context(|| format!("removing {}", stale.display()));
            }
        }
    }
    if let Err(e) = std::fs::rename(incoming, database) {
        let _ = std::fs::remove_file(incoming);
        return Err(e).with_context(|| format!("moving the backup to {}", database.display()));
    }
    if let Some(dir) = database.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn same_owner(file: &Path, dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let want = std::fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    let have = std::fs::metadata(file).with_context(|| format!("reading {}", file.display()))?;
    if (have.uid(), have.gid()) != (want.uid(), want.gid()) {
        std::os::unix::fs::chown(file, Some(want.uid()), Some(want.gid()))
            .with_context(|| format!("giving {} the owner of {}", file.display(), dir.display()))?;
    }
    Ok(())
}

/// The database does not hold the gateway key; the devices' configs name its public key.
fn remind_of_the_key(state_dir: &Path) {
    match gateway_public_key(state_dir) {
        Ok(public) => eprintln!(
            "The gateway key is {} (public key {public}). It is not in the backup: it must be \
             the key of the gateway the backup was taken on, or no device's config works.",
            state_dir.join("server.key").display()
        ),
        Err(_) => eprintln!(
            "WARNING: there is no gateway key at {key}. The backup does not hold it. Copy the \
             old gateway's server.key to {key} (mode 0600) BEFORE `heimweg serve`: serve would \
             create a new key, and no device's config would work with it.",
            key = state_dir.join("server.key").display()
        ),
    }
}
