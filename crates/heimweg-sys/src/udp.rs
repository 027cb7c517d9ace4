//! UDP sockets for the WireGuard port, with batched receive and send.
//!
//! Both directions batch twice: `recvmmsg`/`sendmmsg` carry many messages per syscall, and
//! each message may carry many datagrams through UDP GRO (the kernel coalesces a flow's
//! datagrams of equal size into one buffer) and UDP GSO (we hand over equal-size datagrams to
//! one destination as one message and the kernel segments them).

use crate::{cvt, cvt_size, tun::set_nonblocking};
use std::io;
use std::io::IoSlice;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Messages per syscall; longer batches are split.
const MAX_BATCH: usize = 64;
/// `SOL_UDP` options (linux/udp.h), spelled out because not every libc target defines them.
const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;
/// Control-message room per message: one `cmsghdr` plus an int, 8-byte aligned.
const CMSG_ROOM: usize = 4;

/// What `recv_batch` learned about one received message.
#[derive(Clone, Copy, Debug)]
pub struct RecvMeta {
    /// Bytes in the buffer.
    pub len: usize,
    /// With GRO the buffer holds consecutive datagrams of this size (the last may be
    /// shorter); without, it equals `len`.
    pub segment: usize,
    pub addr: SocketAddr,
}

impl Default for RecvMeta {
    fn default() -> Self {
        RecvMeta {
            len: 0,
            segment: 0,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        }
    }
}

impl RecvMeta {
    /// The datagrams in `buf` (the buffer this meta describes), one by one.
    pub fn datagrams<'b>(&self, buf: &'b [u8]) -> std::slice::Chunks<'b, u8> {
        let data = &buf[..self.len.min(buf.len())];
        data.chunks(self.segment.max(1))
    }
}

/// Datagrams to one destination. More than one are sent as a GSO batch: all must have the
/// length of the first, except the last, which may be shorter.
#[derive(Clone, Copy, Debug)]
pub struct Transmit<'a> {
    pub dst: SocketAddr,
    pub segments: &'a [IoSlice<'a>],
}

#[derive(Debug)]
pub struct UdpSocket {
    fd: OwnedFd,
    /// AF_INET6 sockets send to IPv4 peers as v4-mapped addresses.
    v6: bool,
    /// Cleared for good the first time the kernel refuses a GSO batch (a route through a
    /// device without checksum offload): from then on every datagram goes alone.
    gso: std::sync::atomic::AtomicBool,
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: passes a pointer to a live c_int and its exact size.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Encodes `addr` as a sockaddr for a socket of the given family.
fn to_sockaddr(addr: SocketAddr, v6_socket: bool) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    let addr = match addr {
        SocketAddr::V4(a) if v6_socket => {
            SocketAddr::V6(SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0))
        }
        a => a,
    };
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
            (ss, size_of::<libc::sockaddr_in>() as libc::socklen_t)
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
            (ss, size_of::<libc::sockaddr_in6>() as libc::socklen_t)
        }
    }
}

/// Decodes a sockaddr the kernel filled in; v4-mapped IPv6 becomes plain IPv4 so that callers
/// see one form per peer whatever socket it arrived on.
fn from_sockaddr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: libc::sockaddr_in =
                unsafe { std::ptr::read((ss as *const libc::sockaddr_storage).cast()) };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: libc::sockaddr_in6 =
                unsafe { std::ptr::read((ss as *const libc::sockaddr_storage).cast()) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                None => SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    port,
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )),
            })
        }
        _ => None,
    }
}

impl UdpSocket {
    /// Binds `addr`. An unspecified IPv6 address gives a dual-stack socket. With `reuse_port`
    /// several sockets (one per worker) share the port and the kernel spreads flows over them.
    /// Buffers are forced to `buffer_bytes` where we have CAP_NET_ADMIN, else raised as far as
    /// the sysctl limits allow.
    pub fn bind(addr: SocketAddr, reuse_port: bool, buffer_bytes: usize) -> io::Result<UdpSocket> {
        let v6 = addr.is_ipv6();
        let family = if v6 { libc::AF_INET6 } else { libc::AF_INET };
        // SAFETY: plain socket(2) call.
        let raw = cvt(unsafe {
            libc::socket(
                family,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::IPPROTO_UDP,
            )
        })?;
        // SAFETY: `raw` is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let s = fd.as_raw_fd();
        if reuse_port {
            setsockopt_int(s, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
        }
        if v6 && addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
            setsockopt_int(s, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 0)?;
        }
        let size = libc::c_int::try_from(buffer_bytes).unwrap_or(libc::c_int::MAX);
        for (force, plain) in [
            (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
            (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
        ] {
            if setsockopt_int(s, libc::SOL_SOCKET, force, size).is_err() {
                // Without CAP_NET_ADMIN: the kernel caps this at net.core.*mem_max.
                let _ = setsockopt_int(s, libc::SOL_SOCKET, plain, size);
            }
        }
        let (ss, len) = to_sockaddr(addr, v6);
        // SAFETY: `ss` holds a sockaddr of length `len` for this socket's family.
        cvt(unsafe { libc::bind(s, (&ss as *const libc::sockaddr_storage).cast(), len) })?;
        Ok(UdpSocket {
            fd,
            v6,
            gso: std::sync::atomic::AtomicBool::new(true),
        })
    }

    /// Asks the kernel to coalesce received datagrams (UDP GRO). Afterwards one receive
    /// buffer may hold many datagrams (see [`RecvMeta::segment`]), so buffers must have room
    /// for 64 KiB. Returns whether the kernel agreed.
    pub fn enable_gro(&self) -> bool {
        setsockopt_int(self.fd.as_raw_fd(), libc::SOL_UDP, UDP_GRO, 1).is_ok()
    }

    /// Whether multi-datagram [`Transmit`]s still go out as one GSO message.
    pub fn gso(&self) -> bool {
        self.gso.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        // SAFETY: zeroed sockaddr_storage is valid; getsockname writes at most `len` bytes.
        let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
        let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: `ss` is writable for `len` bytes and `len` is a live socklen_t.
        cvt(unsafe {
            libc::getsockname(
                self.fd.as_raw_fd(),
                (&mut ss as *mut libc::sockaddr_storage).cast(),
                &mut len,
            )
        })?;
        from_sockaddr(&ss).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))
    }

    pub fn set_nonblocking(&self, nb: bool) -> io::Result<()> {
        set_nonblocking(self.fd.as_raw_fd(), nb)
    }

    /// Receives up to `min(bufs.len(), meta.len(), 64)` datagrams with one `recvmmsg`.
    /// Returns how many (at least one), or `WouldBlock` on a non-blocking socket with none.
    /// A datagram longer than its buffer is truncated to the buffer's length.
    pub fn recv_batch(&self, bufs: &mut [&mut [u8]], meta: &mut [RecvMeta]) -> io::Result<usize> {
        let n = bufs.len().min(meta.len()).min(MAX_BATCH);
        if n == 0 {
            return Ok(0);
        }
        // SAFETY: iovec, sockaddr_storage and mmsghdr are plain C structs (integers and raw
        // pointers) for which all-zero is a valid value; the same holds for the two below.
        let mut iovs: [libc::iovec; MAX_BATCH] = unsafe { zeroed() };
        // SAFETY: see above.
        let mut addrs: [libc::sockaddr_storage; MAX_BATCH] = unsafe { zeroed() };
        // SAFETY: see above.
        let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { zeroed() };
        let mut control = [[0u64; CMSG_ROOM]; MAX_BATCH];
        for i in 0..n {
            iovs[i] = libc::iovec {
                iov_base: bufs[i].as_mut_ptr().cast(),
                iov_len: bufs[i].len(),
            };
            msgs[i].msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
            msgs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            msgs[i].msg_hdr.msg_iov = &mut iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_control = control[i].as_mut_ptr().cast();
            msgs[i].msg_hdr.msg_controllen = size_of::<[u64; CMSG_ROOM]>() as _;
        }
        // SAFETY: `msgs[..n]` point at `iovs`/`addrs`/`control` entries and at `bufs`, all of
        // which outlive the call; each iovec describes a writable buffer of its stated length.
        let r = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                n as libc::c_uint,
                // Without it a blocking socket waits until all `n` slots are filled.
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        let got = cvt(r)? as usize;
        for i in 0..got {
            let len = (msgs[i].msg_len as usize).min(bufs[i].len());
            meta[i] = RecvMeta {
                len,
                segment: gro_segment(&msgs[i].msg_hdr).unwrap_or(len),
                addr: from_sockaddr(&addrs[i]).unwrap_or_else(|| RecvMeta::default().addr),
            };
        }
        Ok(got)
    }

    /// Sends the transmits with `sendmmsg`, up to 64 messages per syscall, each multi-datagram
    /// transmit as one GSO message. A message the kernel refuses (too big, unreachable
    /// destination) is skipped so it cannot hold up the rest. Stops when the socket buffer is
    /// full and returns how many datagrams were left unsent for that reason.
    pub fn send_batch(&self, pkts: &[Transmit<'_>]) -> usize {
        // Position: transmit `at`, and within it segment `seg` (only nonzero without GSO).
        let (mut at, mut seg) = (0usize, 0usize);
        // A transmit the kernel would not segment (its datagrams are larger than the path
        // MTU and must be fragmented): sent one datagram at a time instead.
        let mut split: Option<usize> = None;
        debug_assert!(pkts
            .iter()
            .all(|p| p.segments.split_last().is_none_or(|(last, rest)| {
                rest.iter().all(|s| s.len() == p.segments[0].len())
                    && last.len() <= p.segments[0].len()
            })));
        let unsent = |at: usize, seg: usize| -> usize {
            pkts[at..].iter().map(|p| p.segments.len()).sum::<usize>() - seg
        };
        while at < pkts.len() {
            let gso = self.gso();
            // SAFETY: plain C structs for which all-zero is a valid value (as in recv_batch).
            let mut addrs: [libc::sockaddr_storage; MAX_BATCH] = unsafe { zeroed() };
            // SAFETY: see above.
            let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { zeroed() };
            let mut control = [[0u64; CMSG_ROOM]; MAX_BATCH];
            // Which (transmit, first segment, segment count) each message carries.
            let mut carries = [(0usize, 0usize, 0usize); MAX_BATCH];
            let (mut t, mut s) = (at, seg);
            let mut k = 0;
            while k < MAX_BATCH && t < pkts.len() {
                let p = &pkts[t];
                if p.segments.is_empty() {
                    t += 1;
                    continue;
                }
                let count = if gso && s == 0 && split != Some(t) {
                    p.segments.len()
                } else {
                    1
                };
                let (ss, len) = to_sockaddr(p.dst, self.v6);
                addrs[k] = ss;
                let hdr = &mut msgs[k].msg_hdr;
                hdr.msg_name = (&mut addrs[k] as *mut libc::sockaddr_storage).cast();
                hdr.msg_namelen = len;
                // IoSlice is ABI-compatible with iovec; the kernel only reads through it.
                hdr.msg_iov = p.segments[s..s + count].as_ptr() as *mut libc::iovec;
                hdr.msg_iovlen = count as _;
                if count > 1 {
                    set_segment(hdr, &mut control[k], p.segments[0].len());
                }
                carries[k] = (t, s, count);
                k += 1;
                s += count;
                if s == p.segments.len() {
                    t += 1;
                    s = 0;
                }
            }
            if k == 0 {
                break;
            }
            // SAFETY: `msgs[..k]` point at live `addrs`/`control` entries and at the callers'
            // segments, which the kernel only reads.
            let r = unsafe { libc::sendmmsg(self.fd.as_raw_fd(), msgs.as_mut_ptr(), k as _, 0) };
            let next = |m: usize| -> (usize, usize) {
                let (t, s, count) = carries[m];
                if s + count == pkts[t].segments.len() {
                    (t + 1, 0)
                } else {
                    (t, s + count)
                }
            };
            match cvt(r) {
                Ok(n) if n > 0 => (at, seg) = next(n as usize - 1),
                Ok(_) => return unsent(at, seg),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return unsent(at, seg),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The kernel cannot segment towards this route: send datagrams one by one,
                // this message included, from now on.
                Err(e) if carries[0].2 > 1 && matches!(e.raw_os_error(), Some(libc::EIO)) => {
                    self.gso.store(false, std::sync::atomic::Ordering::Relaxed);
                }
                // Too big for the route without fragmenting, which GSO does not do: this
                // transmit's datagrams go one by one (the kernel fragments each).
                Err(e)
                    if carries[0].2 > 1
                        && matches!(e.raw_os_error(), Some(libc::EMSGSIZE | libc::EINVAL)) =>
                {
                    split = Some(carries[0].0);
                }
                // The first message was refused: skip it.
                Err(_) => (at, seg) = next(0),
            }
        }
        0
    }

    /// Sends one datagram, reporting the kernel's error (unlike `send_batch`, which skips it).
    pub fn send_to(&self, data: &[u8], dst: SocketAddr) -> io::Result<usize> {
        let (ss, len) = to_sockaddr(dst, self.v6);
        // SAFETY: `data` is readable for its length; `ss` holds a sockaddr of length `len`.
        cvt_size(unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                data.as_ptr().cast(),
                data.len(),
                0,
                (&ss as *const libc::sockaddr_storage).cast(),
                len,
            )
        })
    }

    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let mut meta = [RecvMeta::default()];
        self.recv_batch(&mut [buf], &mut meta)?;
        Ok((meta[0].len, meta[0].addr))
    }
}

/// Attaches a `UDP_SEGMENT` control message (the GSO segment size) to `hdr`.
fn set_segment(hdr: &mut libc::msghdr, room: &mut [u64; CMSG_ROOM], size: usize) {
    let size = u16::try_from(size).unwrap_or(u16::MAX);
    hdr.msg_control = room.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE only computes a length.
    hdr.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as _;
    // SAFETY: `room` is 32 bytes, 8-byte aligned, more than CMSG_SPACE(2) = 24, so the first
    // header and its 2-byte payload lie inside it.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(hdr);
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), size);
    }
}

/// The GRO segment size the kernel reported for a received message, if it coalesced.
fn gro_segment(hdr: &libc::msghdr) -> Option<usize> {
    if hdr.msg_control.is_null() || hdr.msg_controllen == 0 {
        return None;
    }
    // SAFETY: the kernel filled `msg_control` with `msg_controllen` bytes of well-formed
    // control messages; CMSG_FIRSTHDR/NXTHDR stay within them and return null at the end.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == UDP_GRO {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                return usize::try_from(v).ok().filter(|&v| v > 0);
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    None
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poll::wait_readable;
    use std::time::Duration;

    #[test]
    fn dual_stack_socket_batches_and_reports_plain_ipv4_sources() {
        let server = UdpSocket::bind("[::]:0".parse().unwrap(), false, 1 << 20).unwrap();
        let port = server.local_addr().unwrap().port();
        let v4 = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), false, 1 << 20).unwrap();
        let v6 = UdpSocket::bind("[::1]:0".parse().unwrap(), false, 1 << 20).unwrap();
        let to4: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let to6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
        let unsent = v4.send_batch(&[
            Transmit {
                dst: to4,
                segments: &[IoSlice::new(b"one")],
            },
            Transmit {
                dst: to4,
                segments: &[IoSlice::new(b"two")],
            },
        ]);
        assert_eq!(unsent, 0);
        v6.send_to(b"three", to6).unwrap();

        let mut got = Vec::new();
        let mut storage = vec![vec![0u8; 64]; 8];
        while got.len() < 3 {
            let mut bufs: Vec<&mut [u8]> = storage.iter_mut().map(|b| &mut b[..]).collect();
            let mut meta = [RecvMeta::default(); 8];
            // Bounded wait so that a lost datagram fails the test instead of hanging it.
            let ready = wait_readable(&[server.as_raw_fd()], Some(Duration::from_secs(5)));
            assert_eq!(ready.unwrap(), 1, "datagrams did not arrive");
            let n = server.recv_batch(&mut bufs, &mut meta).unwrap();
            assert!(n >= 1);
            for i in 0..n {
                got.push((bufs[i][..meta[i].len].to_vec(), meta[i].addr));
            }
        }
        let v4_addr = v4.local_addr().unwrap();
        assert_eq!(
            got[0],
            (b"one".to_vec(), v4_addr),
            "v4 source comes back as V4"
        );
        assert_eq!(got[1], (b"two".to_vec(), v4_addr));
        assert_eq!(got[2], (b"three".to_vec(), v6.local_addr().unwrap()));

        // Replies to an IPv4 peer from the dual-stack socket go out v4-mapped and arrive.
        server.send_to(b"back", v4_addr).unwrap();
        let ready = wait_readable(&[v4.as_raw_fd()], Some(Duration::from_secs(5)));
        assert_eq!(ready.unwrap(), 1, "reply did not arrive");
        let mut buf = [0u8; 16];
        let (n, from) = v4.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"back");
        assert_eq!(from.port(), port);
    }

    #[test]
    fn nonblocking_receive_without_data_would_block() {
        let s = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), false, 1 << 16).unwrap();
        s.set_nonblocking(true).unwrap();
        let mut b = [0u8; 8];
        assert_eq!(
            s.recv_from(&mut b).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }

    #[test]
    fn a_refused_datagram_does_not_hold_up_the_rest() {
        let rx = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), false, 1 << 20).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), false, 1 << 20).unwrap();
        let to = rx.local_addr().unwrap();
        let big = vec![0u8; 70_000]; // larger than any UDP datagram: EMSGSIZE
        let unsent = tx.send_batch(&[
            Transmit {
                dst: to,
                segments: &[IoSlice::new(&big)],
            },
            Transmit {
                dst: to,
                segments: &[IoSlice::new(b"ok")],
            },
        ]);
        assert_eq!(
            unsent, 0,
            "a refused datagram is skipped, not left for later"
        );
        let mut b = [0u8; 8];
        let (len, _) = rx.recv_from(&mut b).unwrap();
        assert_eq!(&b[..len], b"ok");
        assert!(
            tx.send_to(&big, to).is_err(),
            "send_to reports what send_batch skips"
        );
    }

    /// Receives until `want` datagrams have arrived, splitting GRO buffers.
    fn receive_datagrams(rx: &UdpSocket, want: usize) -> (Vec<Vec<u8>>, bool) {
        let mut got = Vec::new();
        let mut coalesced = false;
        let mut storage = vec![vec![0u8; 65536]; 4];
        while got.len() < want {
            let ready = wait_readable(&[rx.as_raw_fd()], Some(Duration::from_secs(5)));
            assert_eq!(ready.unwrap(), 1, "datagrams did not arrive");
            let mut bufs: Vec<&mut [u8]> = storage.iter_mut().map(|b| &mut b[..]).collect();
            let mut meta = [RecvMeta::default(); 4];
            let n = rx.recv_batch(&mut bufs, &mut meta).unwrap();
            for i in 0..n {
                coalesced |= meta[i].segment < meta[i].len;
                got.extend(meta[i].datagrams(bufs[i]).map(<[u8]>::to_vec));
            }
        }
        (got, coalesced)
    }

    /// Sends ten datagrams of 100 bytes and a last one of 50, numbered in their first byte,
    /// as one GSO batch from a new socket to `rx`; returns them, and whether GSO stayed on.
    fn send_gso_batch(rx: &UdpSocket) -> (Vec<Vec<u8>>, bool) {
        let tx = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), false, 1 << 20).unwrap();
        let data: Vec<Vec<u8>> = (0..11u8)
            .map(|i| vec![i; if i == 10 { 50 } else { 100 }])
            .collect();
        let segments: Vec<IoSlice<'_>> = data.iter().map(|d| IoSlice::new(d)).collect();
        let dst = rx.local_addr().unwrap();
        assert_eq!(
            tx.send_batch(&[Transmit {
                dst,
                segments: &segments
            }]),
            0
        );
        (data, tx.gso())
    }

    #[test]
    fn a_gso_batch_arrives_as_separate_datagrams_in_order() {
        let rx = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), false, 1 << 20).unwrap();
        let (data, gso) = send_gso_batch(&rx);
        assert!(gso, "loopback segments in the kernel");
        let (got, coalesced) = receive_datagrams(&rx, data.len());
        assert!(!coalesced, "without GRO every datagram comes alone");
        assert_eq!(got, data);
    }

    #[test]
    fn gro_hands_over_coalesced_datagrams_that_split_back_exactly() {
        let rx = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), false, 1 << 20).unwrap();
        assert!(rx.enable_gro());
        // A GSO batch travels loopback as one packet, which GRO delivers as one buffer.
        let (data, _) = send_gso_batch(&rx);
        let (got, coalesced) = receive_datagrams(&rx, data.len());
        assert!(coalesced, "the kernel reported a segment size");
        assert_eq!(got, data);
    }

    #[test]
    fn two_sockets_share_a_port_with_reuse_port() {
        let a = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), true, 1 << 16).unwrap();
        let port = a.local_addr().unwrap();
        assert!(UdpSocket::bind(port, true, 1 << 16).is_ok());
        assert!(UdpSocket::bind(port, false, 1 << 16).is_err());
    }
}
