//! heimweg-sys: every `unsafe` syscall heimweg makes, behind small safe types.
//!
//! TUN devices (`/dev/net/tun`, `IFF_NO_PI`, multi-queue, `IFF_VNET_HDR` with TSO/USO
//! offloads), interface configuration (MTU, IPv4 and IPv6 addresses, link state) by ioctl, UDP
//! sockets for the WireGuard port (`SO_REUSEPORT`, dual-stack, forced buffer sizes, batched
//! `recvmmsg`/`sendmmsg`, UDP GRO and GSO), and readiness waiting with
//! `poll` and an eventfd. The rest of the workspace forbids `unsafe`; this crate is where a
//! reviewer looks for it.
//!
//! It deliberately holds no protocol logic, spawns no threads and keeps no state beyond file
//! descriptors (and whether the kernel took a GSO send). Linux only.

pub mod iface;
pub mod poll;
pub mod tun;
pub mod udp;

mod ifreq;

use std::io;

/// Lets a write to a closed pipe end the process quietly, as it does for `ls` or `grep`,
/// instead of failing (Rust ignores SIGPIPE, and `println!` then panics on EPIPE): for the
/// command-line tools, whose output goes into `| head` or `| grep -q`. Never for the daemons:
/// a gateway must outlive a reader that went away.
pub fn die_on_broken_pipe() {
    // SAFETY: setting a signal's disposition to the default takes no pointers and is valid
    // at any time; nothing in this process installs its own SIGPIPE handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Turns a libc return value into `io::Result`, reading errno on -1.
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cvt_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}
