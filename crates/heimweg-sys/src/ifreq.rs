//! `struct ifreq` as the kernel lays it out: a 16-byte name and a 24-byte union. Declared here
//! with plain byte arrays so that each ioctl fills exactly the union member it uses.

use std::io;

pub(crate) const IFNAMSIZ: usize = 16;

#[repr(C)]
pub(crate) struct IfReq {
    pub name: [u8; IFNAMSIZ],
    pub data: [u8; 24],
}

impl IfReq {
    /// An ifreq for `name`, which must be 1..=15 bytes without NUL.
    pub fn new(name: &str) -> io::Result<IfReq> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() >= IFNAMSIZ || bytes.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid interface name {name:?} (1 to 15 bytes, no NUL)"),
            ));
        }
        let mut req = IfReq {
            name: [0; IFNAMSIZ],
            data: [0; 24],
        };
        req.name[..bytes.len()].copy_from_slice(bytes);
        Ok(req)
    }

    pub fn name(&self) -> String {
        let end = self.name.iter().position(|b| *b == 0).unwrap_or(IFNAMSIZ);
        String::from_utf8_lossy(&self.name[..end]).into_owned()
    }

    pub fn set_short(&mut self, v: i16) {
        self.data[..2].copy_from_slice(&v.to_ne_bytes());
    }

    pub fn short(&self) -> i16 {
        i16::from_ne_bytes([self.data[0], self.data[1]])
    }

    pub fn set_int(&mut self, v: i32) {
        self.data[..4].copy_from_slice(&v.to_ne_bytes());
    }

    pub fn int(&self) -> i32 {
        i32::from_ne_bytes([self.data[0], self.data[1], self.data[2], self.data[3]])
    }

    /// Stores a `struct sockaddr_in` (family, port 0, address) in the union.
    pub fn set_sockaddr_in(&mut self, addr: std::net::Ipv4Addr) {
        self.data = [0; 24];
        self.data[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        self.data[4..8].copy_from_slice(&addr.octets());
    }
}
