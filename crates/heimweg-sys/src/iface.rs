//! Interface configuration by ioctl: MTU, link state and addresses, by interface name.

use crate::cvt;
use crate::ifreq::IfReq;
use std::ffi::CString;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A throwaway datagram socket: the handle the interface ioctls are issued on.
fn control_socket(family: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call without pointers.
    let raw = cvt(unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `raw` is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn ioctl_ifreq(family: libc::c_int, request: libc::c_ulong, req: &mut IfReq) -> io::Result<()> {
    let sock = control_socket(family)?;
    // SAFETY: the SIOC*IF* requests used in this module read/write a `struct ifreq`, which
    // `req` is (repr(C), 40 bytes), and it lives for the duration of the call.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), request as _, req as *mut IfReq) })?;
    Ok(())
}

/// The interface index; `NotFound` if there is no such interface.
pub fn index(name: &str) -> io::Result<u32> {
    IfReq::new(name)?;
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface {name}"),
        ))
    } else {
        Ok(idx)
    }
}

pub fn exists(name: &str) -> bool {
    index(name).is_ok()
}

pub fn set_mtu(name: &str, mtu: u32) -> io::Result<()> {
    let mut req = IfReq::new(name)?;
    let mtu = i32::try_from(mtu).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    req.set_int(mtu);
    ioctl_ifreq(libc::AF_INET, libc::SIOCSIFMTU as _, &mut req)
}

pub fn mtu(name: &str) -> io::Result<u32> {
    let mut req = IfReq::new(name)?;
    ioctl_ifreq(libc::AF_INET, libc::SIOCGIFMTU as _, &mut req)?;
    Ok(req.int() as u32)
}

pub fn set_up(name: &str, up: bool) -> io::Result<()> {
    let mut req = IfReq::new(name)?;
    ioctl_ifreq(libc::AF_INET, libc::SIOCGIFFLAGS as _, &mut req)?;
    let flag = libc::IFF_UP as i16;
    let flags = if up {
        req.short() | flag
    } else {
        req.short() & !flag
    };
    req.set_short(flags);
    ioctl_ifreq(libc::AF_INET, libc::SIOCSIFFLAGS as _, &mut req)
}

/// `struct in6_ifreq` from `linux/ipv6.h`.
#[repr(C)]
struct In6IfReq {
    addr: [u8; 16],
    prefix_len: u32,
    ifindex: libc::c_int,
}

/// Adds an address with its prefix length. IPv4 uses SIOCSIFADDR/SIOCSIFNETMASK, which set the
/// interface's *primary* IPv4 address (a second IPv4 call replaces the first; heimweg needs one
/// per family). IPv6 addresses are added alongside others; an existing one is not an error.
pub fn add_address(name: &str, addr: IpAddr, prefix_len: u8) -> io::Result<()> {
    match addr {
        IpAddr::V4(a) => {
            if prefix_len > 32 {
                return Err(io::Error::from(io::ErrorKind::InvalidInput));
            }
            let mut req = IfReq::new(name)?;
            req.set_sockaddr_in(a);
            ioctl_ifreq(libc::AF_INET, libc::SIOCSIFADDR as _, &mut req)?;
            let mask = if prefix_len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix_len))
            };
            let mut req = IfReq::new(name)?;
            req.set_sockaddr_in(std::net::Ipv4Addr::from(mask));
            ioctl_ifreq(libc::AF_INET, libc::SIOCSIFNETMASK as _, &mut req)
        }
        IpAddr::V6(a) => {
            if prefix_len > 128 {
                return Err(io::Error::from(io::ErrorKind::InvalidInput));
            }
            let mut req = In6IfReq {
                addr: a.octets(),
                prefix_len: u32::from(prefix_len),
                ifindex: index(name)? as libc::c_int,
            };
            let sock = control_socket(libc::AF_INET6)?;
            // SAFETY: SIOCSIFADDR on an AF_INET6 socket reads a `struct in6_ifreq`, which `req`
            // is (repr(C)), and it lives for the duration of the call.
            let r = unsafe {
                libc::ioctl(
                    sock.as_raw_fd(),
                    libc::SIOCSIFADDR as _,
                    &mut req as *mut In6IfReq,
                )
            };
            match cvt(r) {
                Ok(_) => Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
                Err(e) => Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_are_errors_not_panics() {
        assert!(index("sixteen-chars-16").is_err());
        assert!(index("").is_err());
        assert!(set_mtu("a\0b", 1400).is_err());
        assert!(!exists("hw-does-not-ex"));
        assert_eq!(
            index("hw-does-not-ex").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}
