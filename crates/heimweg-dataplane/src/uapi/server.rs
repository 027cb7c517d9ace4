//! The UAPI socket: `<dir>/<ifname>.sock`, a UNIX stream socket that `wg` connects to.
//!
//! One accept thread polls a non-blocking listener (so it can be stopped without tricks) and
//! checks every [`GONE_CHECK_INTERVAL`] that the socket file is still ours. Each connection is
//! served on its own short-lived thread with read/write timeouts, so a stuck client cannot block
//! anyone else. Like wireguard-go, a connection may carry several requests in a row; it is closed
//! on EOF, on an unknown operation and after a framing error.

use super::protocol::{format_get, format_stats, parse_set, UapiError, MAX_LINE_LEN};
use super::{DeviceSnapshot, SetRequest};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Largest `set` request accepted (a setconf with ~50 000 peers fits).
pub const MAX_REQUEST_BYTES: usize = 16 << 20;
/// How long a connection may sit idle in the middle of (or between) requests.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the accept thread checks that the socket file is still ours.
pub const GONE_CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// How long the accept thread sleeps when no connection is pending.
const ACCEPT_POLL: Duration = Duration::from_millis(20);
/// Connections served at the same time; more are closed right away.
const MAX_CONNECTIONS: usize = 32;
/// How long one connection may last in all. The idle timeout alone lets a client that sends a
/// byte every few seconds hold its slot for ever, and [`MAX_CONNECTIONS`] of them would lock
/// `wg` and the exporters out; `wg` itself needs a few milliseconds, a `setconf` of 50,000
/// peers well under a second.
#[cfg(not(test))]
const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
#[cfg(test)]
const CONNECTION_LIFETIME: Duration = Duration::from_millis(1500);
/// Longest operation line (`get=1`, `set=1`, `stats=1`) we bother to read.
const MAX_OP_LEN: usize = 64;

/// What the socket calls into. Implemented by the data plane.
pub trait UapiHandler: Send + Sync + 'static {
    /// The state reported by `get=1`.
    fn get(&self) -> DeviceSnapshot;
    /// Applies a fully validated `set=1` request. Should itself be all-or-nothing where it can.
    fn set(&self, req: SetRequest) -> Result<(), UapiError>;
    /// Extra heimweg command `stats=1`: name/value counters (drop counters etc.).
    fn stats(&self) -> Vec<(String, u64)>;
}

/// The running UAPI socket. Dropping it stops the accept thread and unlinks the socket file if
/// it is still the one we created.
pub struct UapiServer {
    path: PathBuf,
    /// Identity of the socket file we bound.
    ident: FileIdent,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for UapiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UapiServer")
            .field("path", &self.path)
            .finish()
    }
}

impl UapiServer {
    /// Creates `dir` (0755 if missing), binds a UNIX stream socket at `dir/<ifname>.sock` and
    /// makes it 0600. A stale socket at that path (one that refuses connections) is removed
    /// first; one that accepts connections belongs to another running instance and yields
    /// `ErrorKind::AddrInUse`. Any other kind of file there yields `ErrorKind::AlreadyExists`.
    ///
    /// `on_gone` is called once (from the accept thread) when the socket file is deleted or
    /// replaced by someone else; the accept thread then stops. The process should then shut
    /// down, as the UAPI spec asks. `on_gone` must not block for long and should not drop the
    /// server itself (if it does, the drop does not wait for the accept thread).
    pub fn start(
        dir: &Path,
        ifname: &str,
        handler: Arc<dyn UapiHandler>,
        on_gone: Box<dyn Fn() + Send + Sync>,
    ) -> io::Result<UapiServer> {
        validate_ifname(ifname)?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)?;
        let path = dir.join(format!("{ifname}.sock"));

        match std::fs::symlink_metadata(&path) {
            Ok(md) if md.file_type().is_socket() => match UnixStream::connect(&path) {
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("{} is in use by another instance", path.display()),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    tracing::info!(path = %path.display(), "removing stale UAPI socket");
                    std::fs::remove_file(&path)?;
                }
                Err(e) => return Err(e),
            },
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }

        let listener = UnixListener::bind(&path)?;
        // Bind, then chmod: `get` reveals the private key, so only the owner may connect.
        // Connecting to a UNIX socket needs write permission on the file. Between bind and
        // chmod the file has mode 0777 & !umask; with the usual umask 022 (systemd's default)
        // that is 0755, not writable by group or others, so nobody else can connect in between.
        // (Setting the umask would need an unsafe libc call, which this crate forbids.)
        let ident = match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .and_then(|()| listener.set_nonblocking(true))
            .and_then(|()| std::fs::symlink_metadata(&path))
        {
            Ok(md) => FileIdent::of(&md),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };

        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            let path = path.clone();
            thread::Builder::new()
                .name(format!("uapi-{ifname}"))
                .spawn(move || accept_loop(listener, &path, ident, &stop, handler, on_gone))
        };
        let thread = match thread {
            Ok(t) => t,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        tracing::debug!(path = %path.display(), "UAPI socket listening");
        Ok(UapiServer {
            path,
            ident,
            stop,
            thread: Some(thread),
        })
    }

    /// The socket's path, `dir/<ifname>.sock`.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for UapiServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // If on_gone dropped us from the accept thread itself, joining would deadlock.
            if t.thread().id() != thread::current().id() {
                let _ = t.join();
            }
        }
        if is_ours(&self.path, self.ident) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Linux's rules for interface names (`dev_valid_name`): 1..=15 bytes, no '/', ':' or
/// whitespace, not "." or "..".
fn validate_ifname(name: &str) -> io::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace());
    if ok {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid interface name {name:?}"),
        ))
    }
}

/// Which file a path refers to. The inode number alone is not enough: tmpfs and ext4 hand a
/// freed inode number to the next new file at once, so the birth time (statx, where the file
/// system has one) is compared too. It never changes during the life of an inode, unlike ctime,
/// which an admin's chown/chmod would bump.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct FileIdent {
    dev: u64,
    ino: u64,
    socket: bool,
    birth: Option<std::time::SystemTime>,
}

impl FileIdent {
    fn of(md: &std::fs::Metadata) -> Self {
        FileIdent {
            dev: md.dev(),
            ino: md.ino(),
            socket: md.file_type().is_socket(),
            birth: md.created().ok(),
        }
    }
}

fn is_ours(path: &Path, ident: FileIdent) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|md| FileIdent::of(&md) == ident)
}

fn accept_loop(
    listener: UnixListener,
    path: &Path,
    ident: FileIdent,
    stop: &AtomicBool,
    handler: Arc<dyn UapiHandler>,
    on_gone: Box<dyn Fn() + Send + Sync>,
) {
    let active = Arc::new(AtomicUsize::new(0));
    let mut last_check = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => spawn_connection(stream, &handler, &active),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(ACCEPT_POLL),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // E.g. EMFILE: back off instead of spinning.
                tracing::warn!(error = %e, "UAPI accept failed");
                thread::sleep(ACCEPT_POLL * 5);
            }
        }
        if last_check.elapsed() >= GONE_CHECK_INTERVAL {
            last_check = Instant::now();
            if !is_ours(path, ident) && !stop.load(Ordering::Relaxed) {
                tracing::warn!(path = %path.display(), "UAPI socket file was removed or replaced");
                on_gone();
                return;
            }
        }
    }
}

/// Decrements the connection counter when a connection thread ends, even by panic.
struct ActiveGuard(Arc<AtomicUsize>);
impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn spawn_connection(stream: UnixStream, handler: &Arc<dyn UapiHandler>, active: &Arc<AtomicUsize>) {
    if active.fetch_add(1, Ordering::Relaxed) >= MAX_CONNECTIONS {
        active.fetch_sub(1, Ordering::Relaxed);
        tracing::warn!("too many UAPI connections; closing a new one");
        return;
    }
    let guard = ActiveGuard(active.clone());
    let handler = handler.clone();
    let spawned = thread::Builder::new()
        .name("uapi-conn".into())
        .spawn(move || {
            let _guard = guard;
            if let Err(e) = serve_connection(stream, &*handler) {
                tracing::debug!(error = %e, "UAPI connection ended with an error");
            }
        });
    if let Err(e) = spawned {
        // The closure (and with it the guard and the stream) was dropped.
        tracing::warn!(error = %e, "could not spawn a UAPI connection thread");
    }
}

/// One line read with a length limit.
enum Line {
    /// A complete line, without its `\n` (a preceding `\r` is kept).
    Full(Vec<u8>),
    /// The peer half-closed after this unterminated, non-empty text.
    Partial(Vec<u8>),
    Eof,
    TooLong,
}

fn read_line(r: &mut impl BufRead, limit: usize) -> io::Result<Line> {
    let mut buf = Vec::new();
    // `limit` bytes of content plus the newline.
    let n = r
        .by_ref()
        .take(limit as u64 + 1)
        .read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(Line::Eof);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        Ok(Line::Full(buf))
    } else if buf.len() > limit {
        Ok(Line::TooLong)
    } else {
        Ok(Line::Partial(buf))
    }
}

fn write_errno(w: &mut impl Write, errno: i32) -> io::Result<()> {
    w.write_all(format!("errno={errno}\n\n").as_bytes())
}

/// Serves requests on one connection until EOF, an unknown operation, a framing error or the
/// end of its [`CONNECTION_LIFETIME`].
fn serve_connection(stream: UnixStream, handler: &dyn UapiHandler) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let writer = stream.try_clone()?;
    let reader = Deadline {
        stream,
        end: Instant::now() + CONNECTION_LIFETIME,
    };
    serve(BufReader::new(reader), writer, handler)
}

/// A socket whose reads wait at most [`IO_TIMEOUT`] each and end at `end` in all.
struct Deadline {
    stream: UnixStream,
    end: Instant,
}

impl Read for Deadline {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the UAPI connection outlived its time",
            ));
        }
        self.stream.set_read_timeout(Some(left.min(IO_TIMEOUT)))?;
        self.stream.read(buf)
    }
}

/// The requests of one connection, read from `reader` and answered on `writer`. Apart from the
/// socket so that the fuzz target drives exactly this framing from a byte slice.
pub(crate) fn serve(
    mut reader: impl BufRead,
    mut writer: impl Write,
    handler: &dyn UapiHandler,
) -> io::Result<()> {
    loop {
        let op = match read_line(&mut reader, MAX_OP_LEN)? {
            Line::Full(op) => op,
            // wireguard-go: an unterminated operation line ends the connection silently.
            Line::Partial(_) | Line::Eof | Line::TooLong => return Ok(()),
        };
        match op.as_slice() {
            b"get=1" | b"stats=1" => {
                // Like wireguard-go: the very next byte must be the terminating '\n'.
                let mut next = [0u8; 1];
                if reader.read(&mut next)? == 0 {
                    return Ok(());
                }
                if next[0] != b'\n' {
                    tracing::debug!("trailing character after UAPI get");
                    write_errno(&mut writer, UapiError::Invalid(String::new()).errno())?;
                    // The rest of the request is unknown; give up on this connection.
                    return Ok(());
                }
                let mut out = String::new();
                if op == b"get=1" {
                    format_get(&handler.get(), &mut out);
                } else {
                    format_stats(&handler.stats(), &mut out);
                }
                writer.write_all(out.as_bytes())?;
            }
            b"set=1" => {
                let (body, eof) = match read_set_body(&mut reader)? {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(error = %e, "rejected UAPI set request");
                        write_errno(&mut writer, e.errno())?;
                        return Ok(());
                    }
                };
                let result = std::str::from_utf8(&body)
                    .map_err(|_| UapiError::Invalid("request is not UTF-8".into()))
                    .and_then(parse_set)
                    .and_then(|req| {
                        tracing::debug!(?req, "UAPI set");
                        handler.set(req)
                    });
                let errno = match result {
                    Ok(()) => 0,
                    Err(e) => {
                        tracing::warn!(error = %e, "UAPI set failed");
                        e.errno()
                    }
                };
                write_errno(&mut writer, errno)?;
                if eof {
                    return Ok(());
                }
            }
            _ => {
                tracing::debug!(op = %String::from_utf8_lossy(&op), "invalid UAPI operation");
                return Ok(());
            }
        }
    }
}

/// Reads the lines of a set request up to the blank line. Returns the body (each line with its
/// `\n`) and whether the client half-closed instead of sending the blank line (wireguard-go
/// treats EOF like the blank line; so do we). A read timeout is an I/O error: nothing is applied.
#[allow(clippy::type_complexity)]
fn read_set_body(r: &mut impl BufRead) -> io::Result<Result<(Vec<u8>, bool), UapiError>> {
    let mut body = Vec::new();
    loop {
        let remaining = MAX_REQUEST_BYTES.saturating_sub(body.len());
        // +1 so that a trailing '\r' before '\n' does not count against the line limit.
        let limit = (MAX_LINE_LEN + 1).min(remaining);
        match read_line(r, limit)? {
            Line::Full(line) => {
                if line.is_empty() || line == b"\r" {
                    return Ok(Ok((body, false)));
                }
                body.extend_from_slice(&line);
                body.push(b'\n');
            }
            Line::Partial(line) => {
                body.extend_from_slice(&line);
                return Ok(Ok((body, true)));
            }
            Line::Eof => return Ok(Ok((body, true))),
            Line::TooLong => {
                let what = if limit < MAX_LINE_LEN + 1 {
                    format!("request larger than {MAX_REQUEST_BYTES} bytes")
                } else {
                    format!("line longer than {MAX_LINE_LEN} bytes")
                };
                return Ok(Err(UapiError::Protocol(what)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uapi::{PeerChange, PeerSnapshot};
    use std::io::{BufRead, BufReader, Write};
    use std::sync::atomic::AtomicU32;
    use std::sync::{mpsc, Mutex};

    const K1: &str = "58402e695ba1772b1cc9309755f043251ea77fdcf10fbe63989ceb7e19321376";

    #[derive(Default)]
    struct Mock {
        sets: Mutex<Vec<SetRequest>>,
        snapshot: Mutex<DeviceSnapshot>,
    }

    impl UapiHandler for Mock {
        fn get(&self) -> DeviceSnapshot {
            self.snapshot.lock().unwrap().clone()
        }
        fn set(&self, req: SetRequest) -> Result<(), UapiError> {
            if req.listen_port == Some(1) {
                return Err(UapiError::AddrInUse);
            }
            self.sets.lock().unwrap().push(req);
            Ok(())
        }
        fn stats(&self) -> Vec<(String, u64)> {
            vec![("drop_no_route".into(), 3), ("drop_admission".into(), 0)]
        }
    }

    struct TempDir(PathBuf);
    impl TempDir {
        fn new() -> Self {
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "hwuapi-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&p);
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn noop() -> Box<dyn Fn() + Send + Sync> {
        Box::new(|| {})
    }

    /// Sends `req` and reads the reply up to and including the blank line.
    fn roundtrip(r: &mut BufReader<UnixStream>, req: &str) -> String {
        r.get_mut().write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        loop {
            let mut line = String::new();
            assert!(r.read_line(&mut line).unwrap() > 0, "EOF after {out:?}");
            out.push_str(&line);
            if line == "\n" {
                return out;
            }
        }
    }

    #[test]
    fn clients_that_trickle_bytes_cannot_keep_every_slot() {
        let dir = TempDir::new();
        let mock = Arc::new(Mock::default());
        let handler: Arc<dyn UapiHandler> = mock;
        let server = UapiServer::start(&dir.0, "wgslow", handler, noop()).unwrap();
        // More slow clients than slots, each sending a byte well within the idle timeout.
        let mut slow: Vec<UnixStream> = (0..MAX_CONNECTIONS + 8)
            .map(|_| UnixStream::connect(server.path()).unwrap())
            .collect();
        let started = Instant::now();
        let mut cut = vec![false; slow.len()];
        while started.elapsed() < CONNECTION_LIFETIME * 3 && cut.iter().any(|c| !c) {
            for (s, c) in slow.iter_mut().zip(cut.iter_mut()) {
                if !*c && s.write_all(b"s").is_err() {
                    *c = true;
                }
            }
            thread::sleep(Duration::from_millis(100));
        }
        assert!(
            cut.iter().all(|c| *c),
            "every trickling connection is closed at the end of its lifetime"
        );
        // `wg show` gets through again (once the server threads have given their slots back,
        // a moment after the clients saw their connections close).
        let answered = (0..100).any(|_| {
            let mut s = UnixStream::connect(server.path()).unwrap();
            s.write_all(b"get=1\n\n").unwrap();
            let mut reply = String::new();
            let _ = s.read_to_string(&mut reply);
            if reply.ends_with("errno=0\n\n") {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
            false
        });
        assert!(answered, "a new connection is served again");
    }

    #[test]
    fn get_set_stats_on_one_connection() {
        let dir = TempDir::new();
        let mock = Arc::new(Mock::default());
        mock.snapshot.lock().unwrap().listen_port = 51820;
        let srv = UapiServer::start(&dir.0, "hw0", mock.clone(), noop()).unwrap();
        assert_eq!(srv.path(), dir.0.join("hw0.sock"));
        let md = std::fs::metadata(srv.path()).unwrap();
        assert!(md.file_type().is_socket());
        assert_eq!(md.mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&dir.0).unwrap().mode() & 0o777, 0o755);

        let mut c = BufReader::new(UnixStream::connect(srv.path()).unwrap());
        assert_eq!(
            roundtrip(&mut c, "get=1\n\n"),
            "listen_port=51820\nerrno=0\n\n"
        );
        let set = format!("set=1\nfwmark=5\npublic_key={K1}\nallowed_ip=10.0.0.0/24\n\n");
        assert_eq!(roundtrip(&mut c, &set), "errno=0\n\n");
        assert_eq!(
            roundtrip(
                &mut c,
                &format!("set=1\npublic_key={K1}\nallowed_ip=10.0.0.0/33\n\n")
            ),
            "errno=-22\n\n"
        );
        assert_eq!(roundtrip(&mut c, "set=1\nlisten_port\n\n"), "errno=-71\n\n");
        assert_eq!(
            roundtrip(&mut c, "set=1\nlisten_port=1\n\n"),
            "errno=-98\n\n"
        );
        assert_eq!(
            roundtrip(&mut c, "stats=1\n\n"),
            "drop_no_route=3\ndrop_admission=0\nerrno=0\n\n"
        );
        let sets = mock.sets.lock().unwrap().clone();
        let mut p = PeerChange::new(hex_key(K1));
        p.allowed_ips_add = vec!["10.0.0.0/24".parse().unwrap()];
        assert_eq!(
            sets,
            vec![SetRequest {
                fwmark: Some(5),
                peers: vec![p],
                ..Default::default()
            }]
        );

        // Unknown operation: connection closed without a reply.
        c.get_mut().write_all(b"frobnicate=1\n\n").unwrap();
        let mut rest = String::new();
        assert_eq!(c.read_line(&mut rest).unwrap(), 0);

        // Trailing garbage after get=1: -EINVAL, then closed.
        let mut c = BufReader::new(UnixStream::connect(srv.path()).unwrap());
        c.get_mut().write_all(b"get=1\nx").unwrap();
        let mut line = String::new();
        c.read_line(&mut line).unwrap();
        assert_eq!(line, "errno=-22\n");

        // Half-close after the set lines (no blank line) still applies, like wireguard-go.
        let mut s = UnixStream::connect(srv.path()).unwrap();
        s.write_all(b"set=1\nfwmark=9").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert_eq!(reply, "errno=0\n\n");
        assert_eq!(mock.sets.lock().unwrap().last().unwrap().fwmark, Some(9));

        // An overlong line is a protocol error and applies nothing.
        let n = mock.sets.lock().unwrap().len();
        let mut c = BufReader::new(UnixStream::connect(srv.path()).unwrap());
        let long = format!("set=1\nfwmark=1\nfwmark={}\n\n", "1".repeat(5000));
        assert_eq!(roundtrip(&mut c, &long), "errno=-71\n\n");
        assert_eq!(mock.sets.lock().unwrap().len(), n);

        let path = srv.path().to_owned();
        drop(srv);
        assert!(!path.exists(), "socket file is removed on drop");
    }

    #[test]
    fn stale_socket_is_replaced_and_live_one_is_not() {
        let dir = TempDir::new();
        std::fs::create_dir_all(&dir.0).unwrap();
        let path = dir.0.join("hw1.sock");
        drop(UnixListener::bind(&path).unwrap()); // leaves a stale socket file behind
        assert!(path.exists());
        let srv = UapiServer::start(&dir.0, "hw1", Arc::new(Mock::default()), noop()).unwrap();
        let err = UapiServer::start(&dir.0, "hw1", Arc::new(Mock::default()), noop()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        // The failed second start must not have disturbed the first.
        let mut c = BufReader::new(UnixStream::connect(srv.path()).unwrap());
        assert_eq!(roundtrip(&mut c, "get=1\n\n"), "errno=0\n\n");
        drop(srv);

        std::fs::write(&path, b"not a socket").unwrap();
        let err = UapiServer::start(&dir.0, "hw1", Arc::new(Mock::default()), noop()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert!(path.exists());

        for bad in ["", "a/b", "sixteen-chars-xx", "..", "a b", "a:b"] {
            let err =
                UapiServer::start(&dir.0, bad, Arc::new(Mock::default()), noop()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn deleting_the_socket_file_fires_on_gone_once() {
        let dir = TempDir::new();
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let srv = UapiServer::start(
            &dir.0,
            "hw2",
            Arc::new(Mock::default()),
            Box::new(move || tx.lock().unwrap().send(()).unwrap()),
        )
        .unwrap();
        std::fs::remove_file(srv.path()).unwrap();
        rx.recv_timeout(Duration::from_secs(5))
            .expect("on_gone was not called");
        // Someone else's file now at the path survives our drop.
        std::fs::write(srv.path(), b"theirs").unwrap();
        let path = srv.path().to_owned();
        drop(srv);
        assert!(path.exists());
        assert!(
            rx.recv_timeout(Duration::from_millis(50)).is_err(),
            "called twice"
        );
    }

    #[test]
    fn replacing_the_socket_file_fires_on_gone() {
        let dir = TempDir::new();
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let srv = UapiServer::start(
            &dir.0,
            "hw4",
            Arc::new(Mock::default()),
            Box::new(move || tx.lock().unwrap().send(()).unwrap()),
        )
        .unwrap();
        std::fs::remove_file(srv.path()).unwrap();
        let theirs = UnixListener::bind(srv.path()).unwrap(); // likely reuses the inode number
        rx.recv_timeout(Duration::from_secs(5))
            .expect("on_gone was not called");
        let path = srv.path().to_owned();
        drop(srv);
        assert!(path.exists(), "someone else's socket must survive our drop");
        drop(theirs);
    }

    #[test]
    fn a_stuck_client_does_not_block_others() {
        let dir = TempDir::new();
        let srv = UapiServer::start(&dir.0, "hw3", Arc::new(Mock::default()), noop()).unwrap();
        let mut stuck = UnixStream::connect(srv.path()).unwrap();
        stuck.write_all(b"set=1\nfwmark=1\n").unwrap(); // never finishes
        let mut c = BufReader::new(UnixStream::connect(srv.path()).unwrap());
        assert_eq!(roundtrip(&mut c, "get=1\n\n"), "errno=0\n\n");
    }

    fn hex_key(s: &str) -> [u8; 32] {
        let mut k = [0u8; 32];
        hex::decode_to_slice(s, &mut k).unwrap();
        k
    }

    fn base64(k: &[u8; 32]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in k.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    /// Talks to the server with the real `wg` binary, which only looks in /var/run/wireguard.
    #[test]
    // One conversation with the real `wg`, step by step.
    #[allow(clippy::too_many_lines)]
    fn real_wg_show_dump_and_set() {
        let wg = Path::new("/usr/bin/wg");
        let wg_dir = Path::new("/var/run/wireguard");
        let root = std::fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false);
        if !wg.exists() || !root {
            eprintln!("skipping: needs /usr/bin/wg and root");
            return;
        }
        // RFC 7748 section 6.1 test vector: Alice's private and public key.
        let private = hex_key("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let public = hex_key("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
        let peer1 = hex_key(K1);
        let peer2 = hex_key("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
        let psk = [7u8; 32];
        let mock = Arc::new(Mock::default());
        *mock.snapshot.lock().unwrap() = DeviceSnapshot {
            private_key: Some(private),
            listen_port: 51820,
            fwmark: 0x42,
            peers: vec![
                PeerSnapshot {
                    public_key: peer1,
                    preshared_key: Some(psk),
                    endpoint: Some("[2001:db8::1]:4500".parse().unwrap()),
                    persistent_keepalive: 25,
                    allowed_ips: vec![
                        "10.0.0.2/32".parse().unwrap(),
                        "fd00::2/128".parse().unwrap(),
                    ],
                    last_handshake: Some(std::time::UNIX_EPOCH + Duration::new(1_700_000_000, 5)),
                    rx_bytes: 1000,
                    tx_bytes: 2000,
                },
                PeerSnapshot {
                    public_key: peer2,
                    preshared_key: None,
                    endpoint: None,
                    persistent_keepalive: 0,
                    allowed_ips: vec![],
                    last_handshake: None,
                    rx_bytes: 0,
                    tx_bytes: 0,
                },
            ],
        };
        let ifname = format!("hwuapi{}", std::process::id());
        let srv = UapiServer::start(wg_dir, &ifname, mock.clone(), noop()).unwrap();

        let out = std::process::Command::new(wg)
            .args(["show", &ifname, "dump"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let want = format!(
            "{}\t{}\t51820\t0x42\n\
             {}\t{}\t[2001:db8::1]:4500\t10.0.0.2/32,fd00::2/128\t1700000000\t1000\t2000\t25\n\
             {}\t(none)\t(none)\t(none)\t0\t0\t0\toff\n",
            base64(&private),
            base64(&public),
            base64(&peer1),
            base64(&psk),
            base64(&peer2),
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), want);

        let out = std::process::Command::new(wg)
            .args([
                "set",
                &ifname,
                "peer",
                &base64(&peer2),
                "allowed-ips",
                "10.0.0.0/24",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let mut p = PeerChange::new(peer2);
        p.replace_allowed_ips = true;
        p.allowed_ips_add = vec!["10.0.0.0/24".parse().unwrap()];
        assert_eq!(
            mock.sets.lock().unwrap().clone(),
            vec![SetRequest {
                peers: vec![p],
                ..Default::default()
            }]
        );

        // showconf renders the same state as a config file.
        let out = std::process::Command::new(wg)
            .args(["showconf", &ifname])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let conf = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            conf.contains(&format!("PrivateKey = {}", base64(&private))),
            "{conf}"
        );
        assert!(
            conf.contains("FwMark = 0x42") && conf.contains("ListenPort = 51820"),
            "{conf}"
        );
        assert!(conf.contains("Endpoint = [2001:db8::1]:4500"), "{conf}");

        // syncconf: get, diff, then set without replace_peers; the vanished peer is removed.
        let file = std::env::temp_dir().join(format!("{ifname}.conf"));
        std::fs::write(
            &file,
            format!(
                "[Interface]\nPrivateKey = {}\nListenPort = 51820\n\n[Peer]\nPublicKey = {}\n\
                 AllowedIPs = 10.0.0.2/32\n",
                base64(&private),
                base64(&peer1)
            ),
        )
        .unwrap();
        mock.sets.lock().unwrap().clear();
        let out = std::process::Command::new(wg)
            .args(["syncconf", &ifname, file.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let req = mock
            .sets
            .lock()
            .unwrap()
            .pop()
            .expect("syncconf sent a set");
        assert!(!req.replace_peers);
        let removed: Vec<_> = req
            .peers
            .iter()
            .filter(|p| p.remove)
            .map(|p| p.public_key)
            .collect();
        assert_eq!(removed, vec![peer2]);
        let kept = req.peers.iter().find(|p| p.public_key == peer1).unwrap();
        assert!(kept.replace_allowed_ips);
        assert_eq!(
            kept.allowed_ips_add,
            vec!["10.0.0.2/32".parse::<ip_network::IpNetwork>().unwrap()]
        );

        // setconf: replace_peers.
        mock.sets.lock().unwrap().clear();
        let out = std::process::Command::new(wg)
            .args(["setconf", &ifname, file.to_str().unwrap()])
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&file);
        assert!(out.status.success(), "{out:?}");
        let req = mock.sets.lock().unwrap().pop().expect("setconf sent a set");
        assert!(req.replace_peers);
        assert_eq!(req.private_key, Some(Some(private)));
        assert_eq!(req.listen_port, Some(51820));
        assert_eq!(req.peers.len(), 1);

        // Our negative errno reaches wg as a proper error message.
        let out = std::process::Command::new(wg)
            .args(["set", &ifname, "listen-port", "1"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("Address already in use"), "{stderr}");
        drop(srv);
    }
}
