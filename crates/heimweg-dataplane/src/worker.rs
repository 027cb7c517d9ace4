//! One worker thread: a TUN queue, a UDP socket and a wake-up eventfd, driving the shared core.
//!
//! The loop is: wait until something is readable or the core's next deadline; drain a batch of
//! datagrams and a batch of TUN packets through the core under one lock acquisition each; let
//! the core emit timer traffic and a bounded number of handshake responses; send everything
//! with one batched syscall. Buffers are allocated once per worker, never per packet.

use crate::{Shared, Sockets, WorkerStats};
use heimweg_core::{HandshakeStep, Output, DATA_OVERHEAD};
use heimweg_sys::poll::wait_readable;
use heimweg_sys::udp::{RecvMeta, Transmit as UdpTransmit};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Datagrams or TUN packets taken per batch.
const BATCH: usize = 32;
/// Largest IP packet a TUN hands us (the interface MTU can be raised up to 64 KiB).
const MAX_PACKET: usize = 65535;
/// Output buffers: room for the largest packet plus WireGuard's overhead.
const OUT_LEN: usize = MAX_PACKET + DATA_OVERHEAD + 64;
/// Handshake responses per loop iteration: keeps data flowing during a handshake storm, while
/// the queue is still drained at several thousand per second.
const HANDSHAKES_PER_ROUND: usize = 16;
/// Longest sleep when no timer is pending; only matters for noticing shutdown promptly.
const IDLE_WAIT: Duration = Duration::from_secs(1);

struct Buffers {
    /// Receive buffers for UDP datagrams.
    rx: Vec<Vec<u8>>,
    meta: Vec<RecvMeta>,
    /// A TUN read buffer.
    tun_in: Vec<u8>,
    /// Output slots, each a whole datagram waiting for `send_batch`.
    out: Vec<Vec<u8>>,
    /// (destination, length) of the filled output slots, in order.
    pending: Vec<(SocketAddr, usize)>,
}

impl Buffers {
    fn new() -> Buffers {
        Buffers {
            rx: (0..BATCH).map(|_| vec![0u8; MAX_PACKET]).collect(),
            meta: vec![RecvMeta::default(); BATCH],
            tun_in: vec![0u8; MAX_PACKET],
            out: (0..BATCH).map(|_| vec![0u8; OUT_LEN]).collect(),
            pending: Vec::with_capacity(BATCH),
        }
    }

    fn full(&self) -> bool {
        self.pending.len() == self.out.len()
    }
}

/// Per-packet problems are counted always but logged at most once per this interval per
/// worker, with how many happened since: a flood must not become a log flood.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Logs the growth of this worker's I/O error counters, at most once per [`WARN_EVERY`].
struct ErrorLog {
    last: Instant,
    seen: (u64, u64, u64),
}

impl ErrorLog {
    fn new() -> ErrorLog {
        ErrorLog {
            last: Instant::now(),
            seen: (0, 0, 0),
        }
    }

    fn maybe_warn(&mut self, index: usize, stats: &WorkerStats) {
        if self.last.elapsed() < WARN_EVERY {
            return;
        }
        self.last = Instant::now();
        let now = (
            stats.udp_recv_errors.load(Ordering::Relaxed),
            stats.udp_send_dropped.load(Ordering::Relaxed),
            stats.tun_write_errors.load(Ordering::Relaxed),
        );
        let new = (
            now.0 - self.seen.0,
            now.1 - self.seen.1,
            now.2 - self.seen.2,
        );
        if new != (0, 0, 0) {
            tracing::warn!(
                worker = index,
                udp_receive_errors = new.0,
                udp_send_dropped = new.1,
                tun_write_errors = new.2,
                "packets lost to I/O errors in the last {} s",
                WARN_EVERY.as_secs()
            );
        }
        self.seen = now;
    }
}

pub(crate) fn run(shared: Arc<Shared>, index: usize) {
    let tun = &shared.tuns[index];
    let waker = &shared.wakers[index];
    let stats = &shared.worker_stats[index];
    let mut error_log = ErrorLog::new();
    let mut bufs = Buffers::new();
    let mut generation = u64::MAX;
    let mut sockets: Option<Arc<Sockets>> = None;

    while !shared.shutdown.load(Ordering::Acquire) {
        let g = shared.sockets_generation.load(Ordering::Acquire);
        if g != generation {
            generation = g;
            sockets = shared.sockets.read().ok().map(|s| Arc::clone(&s));
            if let Some(sock) = sockets.as_ref().and_then(|s| s.list.get(index)) {
                let _ = sock.set_nonblocking(true);
            }
        }
        let Some(socks) = sockets.as_ref() else {
            return;
        };
        let Some(sock) = socks.list.get(index) else {
            return;
        };

        let timeout = {
            let d = shared.device();
            if d.handshake_queue_depth() > 0 {
                Some(Duration::ZERO)
            } else {
                Some(
                    d.poll_timeout()
                        .map_or(IDLE_WAIT, |t| t.saturating_duration_since(Instant::now()))
                        .min(IDLE_WAIT),
                )
            }
        };
        let fds = [tun.as_raw_fd(), sock.as_raw_fd(), waker.as_raw_fd()];
        let ready = match wait_readable(&fds, timeout) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "poll failed; worker stops");
                return;
            }
        };
        let busy_since = Instant::now();
        if ready & 0b100 != 0 {
            let _ = waker.drain();
        }
        if ready & 0b010 != 0 {
            udp_batch(&shared, tun, sock, &mut bufs, stats);
        }
        if ready & 0b001 != 0 && !tun_batch(&shared, tun, sock, &mut bufs, stats) {
            shared.tun_gone.store(true, Ordering::Release);
            return;
        }
        housekeeping(&shared, sock, &mut bufs, stats);
        flush(sock, &mut bufs, stats);
        stats
            .busy_ns
            .fetch_add(busy_since.elapsed().as_nanos() as u64, Ordering::Relaxed);
        error_log.maybe_warn(index, stats);
    }
}

/// Receives one batch of datagrams and runs them through the core.
fn udp_batch(
    shared: &Shared,
    tun: &heimweg_sys::tun::Tun,
    sock: &heimweg_sys::udp::UdpSocket,
    bufs: &mut Buffers,
    stats: &WorkerStats,
) {
    let n = {
        let mut rx: [&mut [u8]; BATCH] = std::array::from_fn(|_| &mut [][..]);
        for (slot, b) in rx.iter_mut().zip(bufs.rx.iter_mut()) {
            *slot = &mut b[..];
        }
        match sock.recv_batch(&mut rx, &mut bufs.meta) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => {
                stats.udp_recv_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "udp receive failed");
                return;
            }
        }
    };
    let now = Instant::now();
    let mut d = shared.device();
    for i in 0..n {
        if bufs.full() {
            drop(d);
            flush(sock, bufs, stats);
            d = shared.device();
        }
        let meta = bufs.meta[i];
        let slot = bufs.pending.len();
        let datagram = &bufs.rx[i][..meta.len.min(MAX_PACKET)];
        match d.handle_network(now, meta.addr, datagram, &mut bufs.out[slot]) {
            Output::Network(t) => bufs.pending.push((t.dst, t.len)),
            Output::Tun { len, .. } => {
                // A full TUN queue means the kernel side is slower than us; dropping here is
                // what a router does, and TCP above will back off.
                if tun.write(&bufs.out[slot][..len]).is_err() {
                    stats.tun_write_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            Output::Nothing => {}
        }
    }
}

/// Reads up to a batch of packets from the TUN and encrypts them. Returns false when the TUN
/// is gone (interface deleted).
fn tun_batch(
    shared: &Shared,
    tun: &heimweg_sys::tun::Tun,
    sock: &heimweg_sys::udp::UdpSocket,
    bufs: &mut Buffers,
    stats: &WorkerStats,
) -> bool {
    for _ in 0..BATCH {
        let n = match tun.read(&mut bufs.tun_in) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(error = %e, "TUN read failed; the interface is gone");
                return false;
            }
        };
        if bufs.full() {
            flush(sock, bufs, stats);
        }
        let slot = bufs.pending.len();
        let mut d = shared.device();
        if let Output::Network(t) =
            d.handle_tun(Instant::now(), &bufs.tun_in[..n], &mut bufs.out[slot])
        {
            bufs.pending.push((t.dst, t.len));
        }
    }
    true
}

/// Timer traffic, packets that waited for a session, and a bounded number of handshakes.
fn housekeeping(
    shared: &Shared,
    sock: &heimweg_sys::udp::UdpSocket,
    bufs: &mut Buffers,
    stats: &WorkerStats,
) {
    let now = Instant::now();
    let mut d = shared.device();
    loop {
        if bufs.full() {
            drop(d);
            flush(sock, bufs, stats);
            d = shared.device();
        }
        let slot = bufs.pending.len();
        match d.poll_transmit(now, &mut bufs.out[slot]) {
            Some(t) => bufs.pending.push((t.dst, t.len)),
            None => break,
        }
    }
    drop(d);
    // Handshakes: the Diffie-Hellmans run without the device's lock, so every worker answers
    // handshakes at the same time and traffic of other peers goes on meanwhile.
    for _ in 0..HANDSHAKES_PER_ROUND {
        if bufs.full() {
            flush(sock, bufs, stats);
        }
        let Some(pending) = shared.device().take_handshake() else {
            break;
        };
        let sender = pending.identify();
        let slot = bufs.pending.len();
        let out = &mut bufs.out[slot];
        let step = shared.device().begin_handshake(now, pending, sender, out);
        let answer = match step {
            HandshakeStep::Done(t) => t,
            HandshakeStep::Lent(mut lent) => {
                lent.run(out);
                shared.device().finish_handshake(now, lent, out)
            }
        };
        if let Some(t) = answer {
            bufs.pending.push((t.dst, t.len));
        }
    }
}

/// Sends every pending datagram with batched syscalls.
fn flush(sock: &heimweg_sys::udp::UdpSocket, bufs: &mut Buffers, stats: &WorkerStats) {
    if bufs.pending.is_empty() {
        return;
    }
    let unused = SocketAddr::from(([0, 0, 0, 0], 0));
    let list: [UdpTransmit<'_>; BATCH] = std::array::from_fn(|i| match bufs.pending.get(i) {
        Some((dst, len)) => UdpTransmit {
            dst: *dst,
            data: &bufs.out[i][..*len],
        },
        None => UdpTransmit {
            dst: unused,
            data: &[],
        },
    });
    let count = bufs.pending.len();
    let mut sent = 0;
    while sent < count {
        match sock.send_batch(&list[sent..count]) {
            // A full socket buffer (EAGAIN) drops the rest of this batch, as a router would.
            Ok(0) | Err(_) => break,
            Ok(n) => sent += n,
        }
    }
    if sent < count {
        stats
            .udp_send_dropped
            .fetch_add((count - sent) as u64, Ordering::Relaxed);
    }
    bufs.pending.clear();
}
