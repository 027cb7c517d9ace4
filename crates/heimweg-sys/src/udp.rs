//! UDP sockets for the WireGuard port, with batched receive and send.
//!
//! The batch interface (`recv_batch`/`send_batch`) is where UDP GRO/GSO will slot in: callers
//! already hand over many datagrams per call.

use crate::{cvt, cvt_size, tun::set_nonblocking};
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Datagrams per syscall; longer batches are split.
const MAX_BATCH: usize = 64;

/// What `recv_batch` learned about one datagram.
#[derive(Clone, Copy, Debug)]
pub struct RecvMeta {
    pub len: usize,
    pub addr: SocketAddr,
}

impl Default for RecvMeta {
    fn default() -> Self {
        RecvMeta {
            len: 0,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        }
    }
}

/// One datagram to send.
#[derive(Clone, Copy, Debug)]
pub struct Transmit<'a> {
    pub dst: SocketAddr,
    pub data: &'a [u8],
}

#[derive(Debug)]
pub struct UdpSocket {
    fd: OwnedFd,
    /// AF_INET6 sockets send to IPv4 peers as v4-mapped addresses.
    v6: bool,
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
        Ok(UdpSocket { fd, v6 })
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
        for i in 0..n {
            iovs[i] = libc::iovec {
                iov_base: bufs[i].as_mut_ptr().cast(),
                iov_len: bufs[i].len(),
            };
            msgs[i].msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
            msgs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            msgs[i].msg_hdr.msg_iov = &mut iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: `msgs[..n]` point at `iovs`/`addrs` entries and at `bufs`, all of which
        // outlive the call; each iovec describes a writable buffer of its stated length.
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
            meta[i] = RecvMeta {
                len: (msgs[i].msg_len as usize).min(bufs[i].len()),
                addr: from_sockaddr(&addrs[i]).unwrap_or_else(|| RecvMeta::default().addr),
            };
        }
        Ok(got)
    }

    /// Sends the datagrams with `sendmmsg`, 64 per syscall. A datagram the kernel refuses
    /// (too big, unreachable destination) is skipped so it cannot hold up the rest. Returns how
    /// many were handled (sent or skipped); stops early, returning the count so far, when the
    /// socket buffer is full (`WouldBlock` if that happens before the first).
    pub fn send_batch(&self, pkts: &[Transmit<'_>]) -> io::Result<usize> {
        let mut done = 0;
        while done < pkts.len() {
            let chunk = &pkts[done..(done + MAX_BATCH).min(pkts.len())];
            // SAFETY: plain C structs for which all-zero is a valid value (as in recv_batch).
            let mut iovs: [libc::iovec; MAX_BATCH] = unsafe { zeroed() };
            // SAFETY: see above.
            let mut addrs: [libc::sockaddr_storage; MAX_BATCH] = unsafe { zeroed() };
            // SAFETY: see above.
            let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { zeroed() };
            for (i, p) in chunk.iter().enumerate() {
                let (ss, len) = to_sockaddr(p.dst, self.v6);
                addrs[i] = ss;
                iovs[i] = libc::iovec {
                    iov_base: p.data.as_ptr() as *mut libc::c_void,
                    iov_len: p.data.len(),
                };
                msgs[i].msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
                msgs[i].msg_hdr.msg_namelen = len;
                msgs[i].msg_hdr.msg_iov = &mut iovs[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: `msgs[..chunk.len()]` point at live `iovs`/`addrs` entries and at the
            // callers' data, which the kernel only reads.
            let r = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    chunk.len() as libc::c_uint,
                    0,
                )
            };
            match cvt(r) {
                Ok(n) => done += n as usize,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return if done == 0 { Err(e) } else { Ok(done) };
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The first datagram of the chunk was refused: skip it.
                Err(_) => done += 1,
            }
        }
        Ok(done)
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
        let sent = v4
            .send_batch(&[
                Transmit {
                    dst: to4,
                    data: b"one",
                },
                Transmit {
                    dst: to4,
                    data: b"two",
                },
            ])
            .unwrap();
        assert_eq!(sent, 2);
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
        let n = tx
            .send_batch(&[
                Transmit {
                    dst: to,
                    data: &big,
                },
                Transmit {
                    dst: to,
                    data: b"ok",
                },
            ])
            .unwrap();
        assert_eq!(n, 2);
        let mut b = [0u8; 8];
        let (len, _) = rx.recv_from(&mut b).unwrap();
        assert_eq!(&b[..len], b"ok");
        assert!(
            tx.send_to(&big, to).is_err(),
            "send_to reports what send_batch skips"
        );
    }

    #[test]
    fn two_sockets_share_a_port_with_reuse_port() {
        let a = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), true, 1 << 16).unwrap();
        let port = a.local_addr().unwrap();
        assert!(UdpSocket::bind(port, true, 1 << 16).is_ok());
        assert!(UdpSocket::bind(port, false, 1 << 16).is_err());
    }
}
