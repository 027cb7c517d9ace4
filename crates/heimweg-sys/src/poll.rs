//! Waiting for readiness: `poll(2)` over a handful of descriptors, and an eventfd to wake a
//! waiting worker from another thread.

use crate::{cvt, cvt_size};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Most descriptors one call waits on: one per bit of the returned mask. Workers use three.
const MAX_FDS: usize = 64;

/// Waits until one of `fds` is readable (or has an error/hangup, which a read then reports), or
/// the timeout passes (`None` = forever). Returns a bitmask: bit `i` set = `fds[i]` is ready.
/// An interrupted wait returns `Ok(0)`.
pub fn wait_readable(fds: &[RawFd], timeout: Option<Duration>) -> io::Result<u64> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let mut pfds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; MAX_FDS];
    for (p, fd) in pfds.iter_mut().zip(fds) {
        p.fd = *fd;
        p.events = libc::POLLIN;
    }
    let ms = match timeout {
        None => -1,
        // Round up so a 0.4 ms deadline does not become a busy loop of zero-timeout polls.
        Some(d) => d.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int,
    };
    // SAFETY: `pfds` is a valid array of `fds.len()` pollfd structs that outlives the call.
    let r = unsafe { libc::poll(pfds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    match cvt(r) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(0),
        Err(e) => return Err(e),
    }
    let mut mask = 0u64;
    for (i, p) in pfds[..fds.len()].iter().enumerate() {
        if p.revents != 0 {
            mask |= 1 << i;
        }
    }
    Ok(mask)
}

/// A non-blocking eventfd: `notify` from any thread makes it readable until `drain`ed.
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd(2) without pointers.
        let raw = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: `raw` is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(EventFd { fd })
    }

    pub fn notify(&self) -> io::Result<()> {
        let one: u64 = 1;
        // SAFETY: writes the 8 bytes of `one`, as eventfd requires.
        let r = unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        match cvt_size(r) {
            Ok(_) => Ok(()),
            // The counter is saturated: the waiter will wake anyway.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub fn drain(&self) -> io::Result<()> {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into `v`, as eventfd requires.
        let r = unsafe { libc::read(self.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
        match cvt_size(r) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eventfd_wakes_a_waiter_and_drains() {
        let e = EventFd::new().unwrap();
        assert_eq!(
            wait_readable(&[e.as_raw_fd()], Some(Duration::ZERO)).unwrap(),
            0
        );
        e.notify().unwrap();
        e.notify().unwrap();
        assert_eq!(wait_readable(&[e.as_raw_fd()], None).unwrap(), 1);
        e.drain().unwrap();
        assert_eq!(
            wait_readable(&[e.as_raw_fd()], Some(Duration::ZERO)).unwrap(),
            0
        );
        let e2 = EventFd::new().unwrap();
        let h = {
            let fd = e2.as_raw_fd();
            std::thread::spawn(move || wait_readable(&[fd], None).unwrap())
        };
        e2.notify().unwrap();
        assert_eq!(h.join().unwrap(), 1);
        assert!(
            wait_readable(&[0; 65], None).is_err(),
            "too many fds is an error"
        );
    }
}
