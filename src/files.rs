//! Writing files that hold a secret (a device config, the gateway key) where an operator says.
//!
//! The path may be anything a root shell can name: a file to create or replace, `/dev/null`,
//! `/dev/stdout`, a pipe, or a name in a shared directory where someone else planted a
//! symlink. A regular file is replaced atomically (a crash leaves the old file or the new one,
//! never half of it) through a temporary file with an unpredictable name, created exclusively
//! and never through a symlink, with mode 0600 from the start. A character device or a pipe is
//! written straight through: replacing `/dev/null` with a file breaks the machine. Anything
//! else (a directory, a socket, a symlink) is refused and left as it is.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Writes `data` to `path` as described in the module documentation.
pub fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            let kind = meta.file_type();
            if kind.is_char_device() || kind.is_fifo() {
                return write_through(path, data);
            }
            if !kind.is_file() {
                bail!(
                    "{} exists and is not a regular file (a {}); not replacing it",
                    path.display(),
                    describe(kind)
                );
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("looking at {}", path.display())),
    }
    replace(path, data)
}

fn describe(kind: std::fs::FileType) -> &'static str {
    if kind.is_dir() {
        "directory"
    } else if kind.is_symlink() {
        "symbolic link"
    } else if kind.is_socket() {
        "socket"
    } else if kind.is_block_device() {
        "block device"
    } else {
        "special file"
    }
}

/// Into a device or pipe that already exists: no creation, no truncation, no symlink.
fn write_through(path: &Path, data: &[u8]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.write_all(data)
        .with_context(|| format!("writing {}", path.display()))
}

/// A new file in `path`'s directory, renamed over `path` once it is complete and on disk.
fn replace(path: &Path, data: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let (tmp, mut f) = create_temporary(&dir, file_name)?;
    let written = f
        .write_all(data)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))
        .and_then(|()| {
            std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
        });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    // The rename is durable once the directory is on disk too.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// `.NAME.RANDOM.tmp`, created with `O_EXCL` (so never through a symlink or over another file)
/// and mode 0600.
fn create_temporary(dir: &Path, name: &std::ffi::OsStr) -> Result<(PathBuf, std::fs::File)> {
    for _ in 0..16 {
        let mut suffix = [0u8; 8];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut suffix);
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.tmp", hex::encode(suffix)));
        let tmp = dir.join(tmp_name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e).with_context(|| format!("creating a file in {}", dir.display()))
            }
        }
    }
    bail!("could not create a temporary file in {}", dir.display())
}

#[cfg(test)]
mod tests {
    use super::write_private;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    fn scratch(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("heimweg-files-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn entries(dir: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_new_or_existing_file_gets_the_data_with_mode_0600_and_no_leftovers() {
        let dir = scratch("regular");
        let path = dir.join("anna.conf");
        write_private(&path, b"first").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(entries(&dir), ["anna.conf"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_character_device_is_written_through_and_stays_a_device() {
        let dir = scratch("chardev");
        // A null device of our own, so that a regression cannot break the machine's.
        let null = dir.join("null");
        let made = std::process::Command::new("mknod")
            .arg(&null)
            .args(["c", "1", "3"])
            .status();
        if !made.is_ok_and(|s| s.success()) {
            eprintln!("skipped: mknod needs root");
            return;
        }
        write_private(&null, b"PrivateKey = ...").unwrap();
        let meta = std::fs::symlink_metadata(&null).unwrap();
        assert!(meta.file_type().is_char_device(), "the device was replaced");
        assert_eq!(entries(&dir), ["null"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_pipe_is_written_through() {
        let dir = scratch("fifo");
        let fifo = dir.join("pipe");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        write_private(&fifo, b"config").unwrap();
        assert_eq!(reader.join().unwrap(), b"config");
        assert!(std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_planted_symlink_or_a_directory_is_refused_and_left_alone() {
        let dir = scratch("symlink");
        let victim = dir.join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let link = dir.join("anna.conf");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let err = write_private(&link, b"config").unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());

        let sub = dir.join("sub");
        std::fs::create_dir(&sub).unwrap();
        let err = write_private(&sub, b"config").unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");
        assert!(sub.is_dir());
        assert_eq!(entries(&dir), ["anna.conf", "sub", "victim"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_old_predictable_temporary_name_is_not_followed() {
        // A symlink planted at NAME.tmp (the name an earlier version used) is never written.
        let dir = scratch("oldtmp");
        let victim = dir.join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("anna.tmp")).unwrap();
        write_private(&dir.join("anna.conf"), b"config").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(dir.join("anna.conf")).unwrap(), b"config");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
