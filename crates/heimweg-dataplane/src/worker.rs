//! One worker thread: a TUN queue, a UDP socket and a wake-up eventfd, driving the shared core.
//!
//! The loop is: wait until something is readable or the core's next deadline; drain a batch of
//! datagrams and a batch of TUN packets through the core under one lock acquisition each; let
//! the core emit timer traffic and a bounded number of handshake responses; send everything
//! with one batched syscall. Buffers are allocated once per worker, never per packet.

use crate::offload::{self, Coalescer, VnetHdr, VNET_HDR_LEN};
use crate::{Shared, Sockets, WorkerStats};
use heimweg_core::{answer_next_handshake, DropReason, Output, DATA_OVERHEAD};
use heimweg_sys::poll::wait_readable;
use heimweg_sys::udp::{RecvMeta, Transmit as UdpTransmit};
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// UDP receive buffers (each may hold 64 coalesced datagrams) or TUN reads per batch.
const BATCH: usize = 32;
/// Output slots: one 64 KiB TUN read becomes up to about 45 datagrams, and a GSO send takes up
/// to 64 of them at once.
const SLOTS: usize = 128;
/// Largest IP packet a TUN hands us (a super-packet, or an MTU raised up to 64 KiB), and the
/// largest coalesced UDP receive.
const MAX_PACKET: usize = 65535;
/// Output buffers: room for the largest packet plus WireGuard's overhead.
const OUT_LEN: usize = MAX_PACKET + DATA_OVERHEAD + 64;
/// Datagrams per GSO send, and their total: the kernel refuses more than 64 segments, and
/// the whole must fit one IP datagram.
const GSO_SEGMENTS: usize = 64;
const GSO_BYTES: usize = 65000;
/// Handshake responses per loop iteration: keeps data flowing during a handshake storm, while
/// the queue is still drained at several thousand per second.
const HANDSHAKES_PER_ROUND: usize = 16;
/// Longest sleep when no timer is pending; only matters for noticing shutdown promptly.
const IDLE_WAIT: Duration = Duration::from_secs(1);

struct Buffers {
    /// Receive buffers for UDP datagrams (GRO may put many in one).
    rx: Vec<Vec<u8>>,
    meta: Vec<RecvMeta>,
    /// A TUN read: the virtio-net header and a packet or super-packet.
    tun_in: Vec<u8>,
    /// One segment cut from a super-packet, on its way to encryption.
    segment: Vec<u8>,
    out: Out,
}

/// Everything produced in a batch and not yet written.
struct Out {
    /// Output slots; the first `used` hold a datagram or a decrypted packet.
    slots: Vec<Vec<u8>>,
    used: usize,
    /// (destination, slot, length) of the datagrams, in order.
    udp: Vec<(SocketAddr, usize, usize)>,
    /// The decrypted packets, grouped into as few TUN writes as possible.
    tun: Coalescer,
}

impl Buffers {
    fn new() -> Buffers {
        Buffers {
            rx: (0..BATCH).map(|_| vec![0u8; MAX_PACKET]).collect(),
            meta: vec![RecvMeta::default(); BATCH],
            // An IPv6 super-packet may carry 64 KiB after its 40-byte header.
            tun_in: vec![0u8; VNET_HDR_LEN + MAX_PACKET + 64],
            segment: vec![0u8; MAX_PACKET],
            out: Out {
                slots: (0..SLOTS).map(|_| vec![0u8; OUT_LEN]).collect(),
                used: 0,
                udp: Vec::with_capacity(SLOTS),
                tun: Coalescer::default(),
            },
        }
    }
}

impl Out {
    fn free(&self) -> usize {
        SLOTS - self.used
    }

    /// Files what the core wrote into the current slot.
    fn take(&mut self, output: Output) {
        match output {
            Output::Network(t) => self.udp.push((t.dst, self.used, t.len)),
            Output::Tun { len, .. } => self.tun.push(&self.slots, self.used, len),
            Output::Nothing => return,
        }
        self.used += 1;
    }

    fn slot(&mut self) -> &mut [u8] {
        &mut self.slots[self.used]
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
                // Without GRO every datagram is received alone, which works, only slower.
                let _ = sock.enable_gro();
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
        housekeeping(&shared, tun, sock, &mut bufs.out, stats);
        flush(tun, sock, &mut bufs.out, stats);
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
    let out = &mut bufs.out;
    let mut d = shared.device();
    for (meta, buf) in bufs.meta[..n].iter().zip(&bufs.rx) {
        for datagram in meta.datagrams(buf) {
            if out.free() == 0 {
                drop(d);
                flush(tun, sock, out, stats);
                d = shared.device();
            }
            let result = d.handle_network(now, meta.addr, datagram, out.slot());
            out.take(result);
        }
    }
}

/// Reads up to a batch of packets from the TUN and encrypts them, cutting super-packets into
/// segments first. Returns false when the TUN is gone (interface deleted).
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
        if n > bufs.tun_in.len() {
            // Longer than the buffer (the kernel reports the whole length): cut off.
            shared.device().count_drop(DropReason::InnerMalformed);
            continue;
        }
        let (head, packet) = bufs.tun_in[..n].split_at_mut(VNET_HDR_LEN.min(n));
        let Some(hdr) = VnetHdr::parse(head) else {
            shared.device().count_drop(DropReason::InnerMalformed);
            continue;
        };
        // Room for every segment up front, so that the lock is taken once per read.
        let segments = match hdr.gso_size {
            0 => 1,
            mss => packet.len().div_ceil(usize::from(mss)),
        };
        if bufs.out.free() < segments.min(SLOTS) {
            flush(tun, sock, &mut bufs.out, stats);
        }
        let now = Instant::now();
        let out = &mut bufs.out;
        let d = shared.device();
        let cut = offload::segment(hdr, packet, &mut bufs.segment, |ip_packet| {
            if out.free() == 0 {
                // Only a super-packet cut into more than SLOTS pieces (an MSS below 512)
                // gets here: sending with the lock held is rare enough not to matter.
                flush(tun, sock, out, stats);
            }
            let result = d.handle_tun(now, ip_packet, out.slot());
            out.take(result);
        });
        if cut.is_err() {
            d.count_drop(DropReason::InnerMalformed);
        }
    }
    true
}

/// Timer traffic, packets that waited for a session, and a bounded number of handshakes.
fn housekeeping(
    shared: &Shared,
    tun: &heimweg_sys::tun::Tun,
    sock: &heimweg_sys::udp::UdpSocket,
    out: &mut Out,
    stats: &WorkerStats,
) {
    let now = Instant::now();
    let mut d = shared.device();
    loop {
        if out.free() == 0 {
            drop(d);
            flush(tun, sock, out, stats);
            d = shared.device();
        }
        match d.poll_transmit(now, out.slot()) {
            Some(t) => out.take(Output::Network(t)),
            None => break,
        }
    }
    drop(d);
    // Handshakes: the Diffie-Hellmans run without the device's lock, so every worker answers
    // handshakes at the same time and traffic of other peers goes on meanwhile. Each one's wall
    // time feeds the estimate of how long the queue takes to drain, which decides when a
    // device is better off with a cookie.
    for _ in 0..HANDSHAKES_PER_ROUND {
        if out.free() == 0 {
            flush(tun, sock, out, stats);
        }
        let started = Instant::now();
        let Some(answered) = answer_next_handshake(|| shared.device(), now, out.slot()) else {
            break;
        };
        if answered.diffie_hellman {
            shared.device().record_handshake_cost(started.elapsed());
        }
        if let Some(t) = answered.transmit {
            out.take(Output::Network(t));
        }
    }
}

/// Writes the decrypted packets to the TUN and sends the datagrams, each run of equal-size
/// datagrams to one destination as one GSO message.
fn flush(
    tun: &heimweg_sys::tun::Tun,
    sock: &heimweg_sys::udp::UdpSocket,
    out: &mut Out,
    stats: &WorkerStats,
) {
    if !out.tun.is_empty() {
        // A full TUN queue means the kernel side is slower than us; dropping here is what a
        // router does, and TCP above will back off.
        let failed = out
            .tun
            .flush(&mut out.slots, |parts| tun.write_vectored(parts).is_ok());
        stats.tun_write_errors.fetch_add(failed, Ordering::Relaxed);
    }
    if !out.udp.is_empty() {
        let slots = &out.slots;
        let segments: [IoSlice<'_>; SLOTS] = std::array::from_fn(|i| match out.udp.get(i) {
            Some(&(_, slot, len)) => IoSlice::new(&slots[slot][..len]),
            None => IoSlice::new(&[]),
        });
        // Runs: consecutive datagrams to one destination, all as long as the first but the
        // last, which may be shorter.
        let mut runs = [(0usize, 0usize); SLOTS];
        let mut count = 0;
        let mut bytes = 0;
        for (i, &(dst, _, len)) in out.udp.iter().enumerate() {
            let extends = count > 0 && {
                let (start, end) = runs[count - 1];
                let (first_dst, _, first_len) = out.udp[start];
                let (_, _, last_len) = out.udp[end - 1];
                dst == first_dst
                    && len <= first_len
                    && last_len == first_len
                    && end - start < GSO_SEGMENTS
                    && bytes + len <= GSO_BYTES
            };
            if extends {
                runs[count - 1].1 = i + 1;
                bytes += len;
            } else {
                runs[count] = (i, i + 1);
                count += 1;
                bytes = len;
            }
        }
        let transmits: [UdpTransmit<'_>; SLOTS] = std::array::from_fn(|r| {
            let (start, end) = runs[r];
            UdpTransmit {
                dst: out.udp.get(start).map_or(out.udp[0].0, |u| u.0),
                segments: &segments[start..end],
            }
        });
        // A full socket buffer drops the rest of this batch, as a router would.
        let unsent = sock.send_batch(&transmits[..count]);
        stats
            .udp_send_dropped
            .fetch_add(unsent as u64, Ordering::Relaxed);
    }
    out.udp.clear();
    out.used = 0;
}
