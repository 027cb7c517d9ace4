//! Linux TUN queues with the virtio-net header, so that the kernel can hand over and take
//! whole TCP/UDP super-packets (up to 64 KiB) instead of one MTU-sized packet per syscall.

use crate::ifreq::IfReq;
use crate::{cvt, cvt_size};
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// `_IOW('T', 202, int)`
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: i16 = 0x0001;
const IFF_NO_PI: i16 = 0x1000;
const IFF_MULTI_QUEUE: i16 = 0x0100;
const IFF_VNET_HDR: i16 = 0x4000;
/// `_IOW('T', 208, unsigned int)`
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;
const TUN_F_USO4: libc::c_uint = 0x20;
const TUN_F_USO6: libc::c_uint = 0x40;

/// Length of the `struct virtio_net_hdr` that precedes every packet read from or written to a
/// queue (the kernel's default `TUNSETVNETHDRSZ`).
pub const VNET_HDR_LEN: usize = 10;

/// One queue of a TUN device. Every packet read or written is preceded by a virtio-net header
/// of [`VNET_HDR_LEN`] bytes (no packet-info header): callers parse and build it.
#[derive(Debug)]
pub struct Tun {
    fd: OwnedFd,
    name: String,
    offload: Offload,
}

/// What the kernel may hand us as one read (and therefore what we must segment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offload {
    /// Partial checksums and TCP and UDP super-packets (kernel 6.2 and later).
    TcpUdp,
    /// Partial checksums and TCP super-packets.
    Tcp,
    /// Whole packets only.
    None,
}

impl Tun {
    /// Creates the interface `name` if it does not exist, or attaches another queue to it when
    /// `multi_queue` is true (opening the same name N times gives N queues that the kernel
    /// spreads flows over). The interface lives while at least one queue is open.
    pub fn open(name: &str, multi_queue: bool) -> io::Result<Tun> {
        let mut req = IfReq::new(name)?;
        let path: &CStr = c"/dev/net/tun";
        // SAFETY: `path` is a valid NUL-terminated string; open has no other preconditions.
        let raw = cvt(unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })?;
        // SAFETY: `raw` was just returned by open and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut flags = IFF_TUN | IFF_NO_PI | IFF_VNET_HDR;
        if multi_queue {
            flags |= IFF_MULTI_QUEUE;
        }
        req.set_short(flags);
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `req` is (repr(C), 40 bytes).
        cvt(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut req as *mut IfReq) })?;
        // Ask for the most the kernel supports; USO arrived in 6.2, TSO long before.
        let tso = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
        let offload = if set_offload(fd.as_raw_fd(), tso | TUN_F_USO4 | TUN_F_USO6).is_ok() {
            Offload::TcpUdp
        } else if set_offload(fd.as_raw_fd(), tso).is_ok() {
            Offload::Tcp
        } else {
            Offload::None
        };
        Ok(Tun {
            fd,
            name: req.name(),
            offload,
        })
    }

    /// Which super-packets reads may return.
    pub fn offload(&self) -> Offload {
        self.offload
    }

    /// The interface name the kernel gave.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one virtio-net header and the (possibly super-) packet after it.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: the pointer and length describe `buf`, which is writable for its whole length.
        cvt_size(unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })
    }

    /// Writes one virtio-net header and packet, gathered from `parts` (the kernel sees their
    /// concatenation), so that a coalesced packet need not be copied together first.
    pub fn write_vectored(&self, parts: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let count = libc::c_int::try_from(parts.len())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `IoSlice` is guaranteed ABI-compatible with `struct iovec` on Unix, and each
        // describes memory readable for its length that outlives the call.
        cvt_size(unsafe { libc::writev(self.fd.as_raw_fd(), parts.as_ptr().cast(), count) })
    }

    pub fn set_nonblocking(&self, nb: bool) -> io::Result<()> {
        set_nonblocking(self.fd.as_raw_fd(), nb)
    }
}

impl AsRawFd for Tun {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Tun {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn set_offload(fd: RawFd, flags: libc::c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value; no memory is passed.
    cvt(unsafe { libc::ioctl(fd, TUNSETOFFLOAD as _, flags as libc::c_ulong) })?;
    Ok(())
}

pub(crate) fn set_nonblocking(fd: RawFd, nb: bool) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on a descriptor we own; no pointers involved.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    let flags = if nb {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, flags) })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iface;

    #[test]
    fn creates_configures_and_removes_a_multi_queue_tun() {
        // "hwsys-" + at most 7 pid digits (pid_max <= 4194304) fits the 15-byte limit.
        let name = format!("hwsys-{}", std::process::id());
        let q1 = Tun::open(&name, true).expect("root and /dev/net/tun are needed");
        assert_eq!(q1.name(), name);
        let q2 = Tun::open(&name, true).unwrap();
        iface::set_mtu(&name, 1380).unwrap();
        assert_eq!(iface::mtu(&name).unwrap(), 1380);
        iface::add_address(&name, "10.213.7.1".parse().unwrap(), 24).unwrap();
        iface::add_address(&name, "fd00:213::1".parse().unwrap(), 64).unwrap();
        iface::add_address(&name, "fd00:213::1".parse().unwrap(), 64).unwrap();
        iface::set_up(&name, true).unwrap();
        q1.set_nonblocking(true).unwrap();
        assert_ne!(q1.offload(), Offload::None, "this kernel has TSO on TUN");
        let mut b = [0u8; 64];
        // Nothing routed to it yet (or only the kernel's own IPv6 chatter): never a panic.
        let _ = q1.read(&mut b);
        assert!(iface::exists(&name));
        drop(q1);
        assert!(iface::exists(&name), "one queue keeps it alive");
        drop(q2);
        assert!(
            !iface::exists(&name),
            "a non-persistent TUN goes with its last queue"
        );
    }

    #[test]
    fn invalid_names_are_refused() {
        assert!(Tun::open("sixteen-chars-16", false).is_err());
        assert!(Tun::open("a\0b", false).is_err());
        assert!(Tun::open("", false).is_err());
    }
}
